"""JSON log lines (LOG_FORMAT=json): one valid JSON object per record, with the event name, the request id,
the logger and the ids the message or ``extra=`` carry."""
import importlib
import json
import logging

import pytest
from django.utils.module_loading import import_string

from integrations_site.api.middleware import request_id_var
from integrations_site.logs import JsonFormatter
from tests.helpers import JsonLines


@pytest.fixture
def json_lines():
    handler = JsonLines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def make_record(msg, *args, name="connections.oauth", level=logging.INFO, exc_info=None, **extra):
    record = logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_record_is_one_json_object_with_event_ids_request_id_and_logger():
    token = request_id_var.set("req-json-1")
    try:
        line = JsonFormatter().format(make_record(
            "connections.oauth.refreshed integration=%s credential=%s", "int-1", "cred-9", tenant_id="ten-3"))
    finally:
        request_id_var.reset(token)
    assert "\n" not in line
    data = json.loads(line)
    assert data["event"] == "connections.oauth.refreshed"
    assert data["message"] == "connections.oauth.refreshed integration=int-1 credential=cred-9"
    assert (data["integration"], data["credential"], data["tenant_id"]) == ("int-1", "cred-9", "ten-3")
    assert data["request_id"] == "req-json-1"
    assert (data["logger"], data["level"]) == ("connections.oauth", "INFO")
    assert data["time"].endswith("+00:00")


def test_a_message_without_a_dotted_event_keeps_the_logger_name_as_event():
    data = json.loads(JsonFormatter().format(make_record("Not Found: %s", "/x", name="django.request",
                                                         level=logging.WARNING)))
    assert (data["event"], data["message"], data["level"]) == ("django.request", "Not Found: /x", "WARNING")
    assert data["request_id"] == "-"  # outside a request


def test_message_pairs_never_replace_the_fixed_fields():
    data = json.loads(JsonFormatter().format(make_record("api.thing level=bogus event=other logger=x id=7")))
    assert (data["event"], data["level"], data["logger"], data["id"]) == ("api.thing", "INFO", "connections.oauth", "7")


def test_an_exception_is_kept_in_the_same_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        line = JsonFormatter().format(make_record("api.unhandled_error view=%s", "V", level=logging.ERROR,
                                                  exc_info=sys.exc_info()))
    data = json.loads(line)
    assert "ValueError: boom" in data["exception"]
    assert data["view"] == "V"


def test_values_that_are_not_json_are_written_as_text():
    import uuid
    from decimal import Decimal

    ident = uuid.uuid4()
    data = json.loads(JsonFormatter().format(make_record("usage.counted", integration_id=ident, cost=Decimal("1.5"))))
    assert (data["integration_id"], data["cost"]) == (str(ident), "1.5")


def test_log_lines_during_a_request_carry_its_request_id(client, db, json_lines):
    response = client.get("/no/such/page", HTTP_X_REQUEST_ID="req-log-404")
    assert response.status_code == 404
    lines = [line for line in json_lines.objects() if line["logger"] == "django.request"]
    assert lines and lines[-1]["request_id"] == "req-log-404"
    assert lines[-1]["event"] == "django.request"


def test_log_format_json_selects_the_json_formatter(monkeypatch):
    import integrations_site.settings.base as base

    monkeypatch.setenv("LOG_FORMAT", "json")
    try:
        config = importlib.reload(base).LOGGING
    finally:
        monkeypatch.delenv("LOG_FORMAT")
        plain = importlib.reload(base).LOGGING
    handler = config["handlers"]["console"]
    assert handler["formatter"] == "json"
    assert import_string(config["formatters"]["json"]["()"]) is JsonFormatter
    assert handler["filters"] == ["request_id"]
    assert plain["handlers"]["console"]["formatter"] == "plain"


def test_the_plain_format_also_carries_the_request_id_of_a_late_django_line(client, db):
    handler = JsonLines()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s request_id=%(request_id)s %(message)s"))
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        assert client.get("/no/such/page", HTTP_X_REQUEST_ID="req-plain-404").status_code == 404
    finally:
        logger.removeHandler(handler)
    assert handler.lines == ["WARNING django.request request_id=req-plain-404 Not Found: /no/such/page"]
