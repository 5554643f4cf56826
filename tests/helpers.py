"""Assertions and test doubles shared by the tests."""
import json
import logging

from integrations_site.api.middleware import RequestIdLogFilter
from integrations_site.logs import JsonFormatter


def assert_envelope(response, status: int, code: str, field: str | None = None) -> dict:
    """The answer is ``status`` with the contract's error envelope and ``code``; returns the error.

    With ``field``, the details must name it.
    """
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    assert error["request_id"] == response["X-Request-ID"]
    if field is not None:
        assert field in error["details"], error
    return error


assert_error = assert_envelope


class JsonLines(logging.Handler):
    """Formats each record as it is emitted (inside the request, where the request id lives)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdLogFilter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))

    def objects(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]
