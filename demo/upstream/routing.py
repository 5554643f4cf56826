"""What a route of the demo upstream is: a handler from ``Request`` to ``Response``, and its auth."""
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import parse_qs


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes = b""
    # What the route's credential check found (an OAuth token's claims, or True).
    auth: object = None

    def form(self) -> dict[str, str]:
        """An ``application/x-www-form-urlencoded`` body, first value of each field."""
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            return {}
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterable[bytes] | None = None


def json_response(data, status: int = 200, headers: dict | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), headers=dict(headers or {}))


def html_response(text: str, status: int = 200) -> Response:
    return Response(status, text.encode(), content_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def redirect(location: str) -> Response:
    return Response(302, headers={"Location": location, "Cache-Control": "no-store"}, content_type="")


@dataclass(frozen=True)
class Route:
    handler: Callable[[Request], Response]
    auth: str | None = None
