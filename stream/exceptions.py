"""Errors that are part of the ``stream`` package's API."""

from typing import Literal


class StreamError(Exception):
    """Base class of every error the stream package raises on purpose."""


class SourceError(StreamError, ValueError):
    """A source the user named is malformed, missing or cannot be opened."""


class SourceLostError(StreamError):
    """A live source stopped delivering frames (read failure or stall): reconnect."""


ProtocolErrorCode = Literal[
    "bad_json",
    "bad_message",
    "unknown_type",
    "bad_field",
    "too_large",
    "unsupported_version",
    "unknown_source",  # subscribed anyway: a source may appear later (a camera not started)
]


class ProtocolError(StreamError, ValueError):
    """A websocket message breaks the wire protocol (see ``stream.protocol``).

    ``code`` is what the ``error`` message to the client carries; ``message`` says what
    was wrong and what is accepted. The server answers with an ``error`` message and
    keeps the connection open.
    """

    def __init__(self, code: ProtocolErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.code: ProtocolErrorCode = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class AccessSettingError(StreamError, ValueError):
    """A bad access setting (a token, allowed origins or hosts): what was wrong and what
    is accepted, never the value of a secret. The CLI turns it into a flag error."""
