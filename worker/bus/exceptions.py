"""Errors that are part of the Redis contract's API."""


class EntryError(ValueError):
    """A stream entry is malformed (missing field, wrong type, other protocol version)."""
