"""The errors of the outbound client; ``code`` is a connection-check error code.

They live apart from the client so that the policy and the transport can raise
them without importing the client. Messages never carry header values or
URLs beyond a host name, so no secret reaches a message or a log.
"""


class OutboundError(Exception):
    """A request that did not produce a usable answer; ``code`` is a check error code."""

    code = "CONNECTION_FAILED"
    started_at: float | None = None  # set by arequest: when the request began (epoch seconds)
    elapsed_ms: int | None = None

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class UrlNotAllowed(OutboundError):
    """The URL, an address it resolves to or a redirect is refused; the API answers 400 URL_NOT_ALLOWED."""

    code = "URL_NOT_ALLOWED"


class OutboundTimeout(OutboundError):
    """The request's whole budget (``timeout``) ran out."""

    code = "TIMEOUT"


class ResponseTooLarge(OutboundError):
    """The body, as sent or once decoded, is larger than ``max_bytes``."""

    code = "RESPONSE_TOO_LARGE"
