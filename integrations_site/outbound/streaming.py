"""Opening a long-lived answer (an event stream) through the client's rules.

Every hop is checked by the policy and redirects are followed as ``arequest``
follows them (https to http refused, auth headers dropped once a redirect
leaves the first origin): ``stream_open`` sends the request through the same
``_Send``. The connect timeout covers connect, redirects and the answer's
headers; once a 200 ``text/event-stream`` answer is there, its body is handed
to the caller as it comes, with no deadline but the caller's own (an idle
timeout). Any other answer is a ``StreamRefused`` carrying its status.
"""
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import transport
from .client import REDIRECT_STATUSES, _check_framing, _clean_headers, _header_dict, _Send
from .errors import OutboundError

MAX_REFUSAL_BYTES = 16 * 1024  # of a refusing answer's body, read for its message
EVENT_STREAM = "text/event-stream"


class StreamRefused(OutboundError):
    """The server answered, but not with an event stream: ``status_code`` says how."""

    def __init__(self, message: str, *, status_code: int, retry_after: str | None = None, code: str | None = None):
        super().__init__(message, code=code or ("INVALID_CREDENTIALS" if status_code in (401, 403)
                                                else "UNEXPECTED_STATUS"))
        self.status_code = status_code
        self.retry_after = retry_after


@dataclass
class _StreamSend(_Send):
    on_open: Callable[[object], Awaitable[None]] | None = None
    connect_deadline: asyncio.Timeout | None = None

    async def _read(self, response):
        if response.status in REDIRECT_STATUSES:
            return await super()._read(response)
        headers = _header_dict(response)
        host = response.url.host
        if response.status != 200:
            await response.content.read(MAX_REFUSAL_BYTES)
            raise StreamRefused(f"The server '{host}' answered {response.status} instead of a stream.",
                                status_code=response.status, retry_after=headers.get("retry-after"))
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != EVENT_STREAM or headers.get("content-encoding", "identity").lower() != "identity":
            raise StreamRefused(f"The server '{host}' answered {media_type or 'no content type'}, not an event "
                                "stream.", status_code=200)
        if "transfer-encoding" in headers:
            _check_framing(headers["transfer-encoding"], host)
        self.connect_deadline.reschedule(None)  # the stream itself has no deadline
        await self.on_open(response.content)
        return response.status, headers, b""


async def stream_open(url: str, *, headers: dict, connect_timeout: float,
                      on_open: Callable[[object], Awaitable[None]], ca_bundle_pem: str | None = None,
                      client_cert_pem: str | None = None, client_key_pem: str | None = None) -> None:
    """GET ``url`` as an event stream; ``await on_open(content)`` once it is open (``content`` is
    aiohttp's StreamReader: ``await content.readany()`` gives the next bytes, ``b""`` at the end).

    Returns when ``on_open`` returns (the server closed the stream, or the
    caller stopped reading); raises OutboundError (UrlNotAllowed, OutboundTimeout
    before the stream opened, StreamRefused) otherwise. Errors raised by
    ``on_open`` come through unchanged when they are OutboundErrors.
    """
    headers = _clean_headers({**headers, "Accept": EVENT_STREAM, "Accept-Encoding": "identity",
                              "Cache-Control": "no-store"})
    context = None
    if ca_bundle_pem or client_cert_pem or client_key_pem:
        context = transport.tls_context(ca_bundle_pem, client_cert_pem, client_key_pem)
    hop = {"host": ""}
    try:
        async with asyncio.timeout(connect_timeout) as deadline:
            send = _StreamSend("GET", headers, None, context, MAX_REFUSAL_BYTES, True, hop, on_open=on_open,
                               connect_deadline=deadline)
            status, _, _, _, _ = await send.follow(url)
    except TimeoutError:
        raise OutboundError(f"No stream from '{hop['host']}' within {connect_timeout:g} s.", code="TIMEOUT") from None
    if status in REDIRECT_STATUSES:  # a redirect without a Location
        raise StreamRefused(f"The server '{hop['host']}' answered {status} without a location.", status_code=status)
