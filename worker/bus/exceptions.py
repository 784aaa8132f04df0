"""Errors that are part of the Redis contract's API."""


class EntryError(ValueError):
    """A stream entry is malformed (missing field, wrong type, other protocol version)."""


class BusError(Exception):
    """The service's Redis cannot be used; the message says why and what is accepted."""


class RedisUnavailable(BusError):
    """No usable Redis at a URL: not a Redis URL, refused, unreachable, or not usable."""
