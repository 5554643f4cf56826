"""The suite-wide secret guard itself catches what it is meant to catch."""
import logging

import pytest

from audit.services import SYSTEM, audit_record
from integrations_site import crypto
from tests import conftest


def test_the_log_guard_records_a_line_holding_an_encrypted_value():
    crypto.encrypt_str("a-secret-for-the-guard-123")
    guard = conftest._SecretLogGuard()
    logger = logging.getLogger("tests.guard")
    logger.addHandler(guard)
    logger.propagate = False  # keep the deliberate leak away from the suite-wide guard
    try:
        logger.warning("leaking %s", "a-secret-for-the-guard-123")
        logger.warning("harmless line")
    finally:
        logger.removeHandler(guard)
        logger.propagate = True
    assert guard.leaks == ["tests.guard: WARNING"]


def test_the_audit_guard_refuses_an_event_holding_an_encrypted_value(db, tenant):
    crypto.encrypt_str("another-guarded-secret-456")
    with pytest.raises(AssertionError, match="audit event"):
        audit_record(actor=SYSTEM, action="test.leak", tenant=tenant, changes={"x": "another-guarded-secret-456"})


def test_the_response_guard_refuses_a_page_holding_an_encrypted_value(client, monkeypatch):
    crypto.encrypt_str("healthz-will-not-say-this")
    monkeypatch.setattr("integrations_site.views.JsonResponse",
                        lambda data, **kw: __import__("django.http").http.JsonResponse(
                            {**data, "x": "healthz-will-not-say-this"}, **kw))
    with pytest.raises(AssertionError, match="stored secret"):
        client.get("/healthz")


def test_the_audit_guard_refuses_a_bulk_inserted_event_holding_an_encrypted_value(db, tenant):
    from audit.models import AuditEvent
    from integrations_site import bulk

    crypto.encrypt_str("bulk-guarded-secret-789")
    event = AuditEvent(tenant=tenant, actor="system", action="test.leak", changes={"x": "bulk-guarded-secret-789"})
    with pytest.raises(AssertionError, match="audit event"):
        bulk.insert([event])
    assert not AuditEvent.objects.filter(action="test.leak").exists()
