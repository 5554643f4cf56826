"""Status polling: a poll against a real server, the worker task, and the poll dispatcher."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from werkzeug import Response

from connections import tasks
from connections.models import ExternalStatus, Integration
from connections.services import polling, queueing
from tests.connections.factories import IntegrationFactory


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]


@pytest.fixture
def far(mapped, httpserver):
    Integration.objects.filter(pk=mapped.pk).update(
        api_base_url=httpserver.url_for("/").rstrip("/"), status_endpoint="/statuses", retry_count=0,
        status_mapping=mapped.status_mapping,
    )
    mapped.refresh_from_db()
    return mapped


def test_the_worker_task_polls_and_stores(far, httpserver):
    httpserver.expect_request("/statuses").respond_with_json({"items": [{"id": "a", "status": "open"}]})

    tasks.run_status_poll(str(far.pk))

    assert ExternalStatus.objects.get(integration=far).canonical_status == "hold"


def test_the_worker_task_logs_and_swallows_a_failed_poll(far, httpserver):
    httpserver.expect_request("/statuses").respond_with_data("nope", status=500)

    tasks.run_status_poll(str(far.pk))

    assert not ExternalStatus.objects.exists()


def test_the_worker_task_skips_a_deleted_integration(far, httpserver):
    Integration.objects.filter(pk=far.pk).update(deleted_at=timezone.now())

    tasks.run_status_poll(str(far.pk))

    assert not httpserver.log


def test_a_poll_sends_the_credential_and_retries_a_5xx(far, httpserver):
    from audit.services import SYSTEM
    from connections.services import credential_set

    Integration.objects.filter(pk=far.pk).update(retry_count=1)
    far.refresh_from_db()
    credential_set(actor=SYSTEM, integration=far, credential_type="bearer", data={"token": "tok_poll_secret_991"})
    httpserver.expect_oneshot_request("/statuses").respond_with_data("busy", status=503)
    httpserver.expect_request("/statuses").respond_with_handler(
        lambda request: Response(json.dumps([{"id": "a", "status": "gone"}]), content_type="application/json")
    )

    result = polling.status_poll(integration=far)

    assert result.seen == 1
    assert [r.headers.get("Authorization") for r, _ in httpserver.log] == ["Bearer tok_poll_secret_991"] * 2


# --- dispatcher --------------------------------------------------------------------------------------------------


def test_poll_dispatcher_claims_only_due_polling_integrations_with_an_endpoint(
    tenant, provider, sent_tasks, django_capture_on_commit_callbacks
):
    sent = sent_tasks[queueing.RUN_STATUS_POLL]
    now = timezone.now()

    def make(name, **fields):
        values = {"update_method": "polling", "status_endpoint": "/statuses", "polling_interval_seconds": 30,
                  **fields}
        return IntegrationFactory(tenant=tenant, provider=provider, name=name, **values)

    due_null = make("never polled")
    due_past = make("past due", next_poll_at=now - timedelta(seconds=1))
    skipped = [
        make("webhook", update_method="webhook"),
        make("no endpoint", status_endpoint=""),
        make("future", next_poll_at=now + timedelta(seconds=20)),
        make("disabled", status="disabled"),
        make("deleted", deleted_at=now),
    ]
    before = {i.pk: i.next_poll_at for i in skipped}

    with django_capture_on_commit_callbacks(execute=True):
        assert polling.status_polls_dispatch(now=now) == 2

    assert sorted(sent) == sorted([str(due_null.pk), str(due_past.pk)])
    for row in Integration.objects.filter(pk__in=[due_null.pk, due_past.pk]):
        assert row.next_poll_at == now + timedelta(seconds=30)
    assert {i.pk: i.next_poll_at for i in Integration.objects.filter(pk__in=before)} == before
    with django_capture_on_commit_callbacks(execute=True):
        assert polling.status_polls_dispatch(now=now) == 0
    assert len(sent) == 2
