"""Webhooks in the admin: secrets shown once on uncacheable pages, encrypted at rest; events read-only with a
pretty body and a replay action that audits."""
import base64
import json
import re

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from audit.services import SYSTEM
from tests.helpers import raw_value
from webhooks import services
from webhooks.models import WebhookEndpoint, WebhookEvent
from webhooks.services.handoff import PROCESS_EVENTS


@pytest.fixture(autouse=True)
def recorded_queue(settings, sent_tasks):
    settings.WEBHOOK_HANDOFF = "immediate"
    return sent_tasks[PROCESS_EVENTS]


def url(model, view, *args):
    return reverse(f"admin:webhooks_{model._meta.model_name}_{view}", args=args)


def shown_secrets(response) -> list[str]:
    return re.findall(r"<code[^>]*>([^<]+)</code>", response.content.decode())


def stored_secret_column(endpoint) -> str:
    return raw_value(WebhookEndpoint, "secret", endpoint.pk)


def add_form(tenant, integration, **fields):
    return {
        "tenant": str(tenant.pk), "integration": str(integration.pk), "name": "From admin", "description": "",
        "path": "", "active": "on", "verify_signature": "on", "signature_scheme": "standard_webhooks",
        "signature_header": "", "tolerance_seconds": "300", "max_body_bytes": "1048576", "dedupe": "on",
        "rate_limit_per_minute": "6000", **fields,
    }


def test_adding_an_endpoint_shows_its_secret_once_and_stores_it_encrypted(staff_client, tenant, integration):
    response = staff_client.post(url(WebhookEndpoint, "add"), add_form(tenant, integration))
    assert response.status_code == 200, response.content[:2000]
    assert "no-store" in response["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get()
    (secret,) = shown_secrets(response)
    assert secret == endpoint.secret and secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret[6:])) <= 64
    assert len(endpoint.path) >= 22
    assert secret not in stored_secret_column(endpoint)
    assert AuditEvent.objects.filter(action="webhook_endpoint.created", target_id=str(endpoint.pk)).exists()

    for page in (url(WebhookEndpoint, "changelist"), url(WebhookEndpoint, "change", endpoint.pk)):
        later = staff_client.get(page)
        assert later.status_code == 200 and secret not in later.content.decode()
    assert "set (hidden)" in staff_client.get(url(WebhookEndpoint, "change", endpoint.pk)).content.decode()


def test_the_add_form_refuses_an_integration_of_another_tenant(staff_client, other_tenant, integration):
    response = staff_client.post(url(WebhookEndpoint, "add"), add_form(other_tenant, integration))
    assert response.status_code == 200 and "belongs to another tenant" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_a_taken_path_in_the_add_form_is_an_error_not_a_500(staff_client, tenant, integration):
    services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                             data={"name": "First", "path": "taken-path-1"})
    response = staff_client.post(url(WebhookEndpoint, "add"), add_form(tenant, integration, path="taken-path-1"))
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert WebhookEndpoint.objects.count() == 1


def test_the_rotate_action_shows_new_secrets_once_and_keeps_the_old_for_the_grace(staff_client, tenant,
                                                                                   integration):
    made = [services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                     data={"name": f"E{i}", "signature_scheme": "github"}) for i in range(2)]
    response = staff_client.post(url(WebhookEndpoint, "changelist"), {
        "action": "rotate_secret", "_selected_action": [str(endpoint.pk) for endpoint, _ in made],
    })
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    shown = shown_secrets(response)
    for endpoint, old in made:
        endpoint.refresh_from_db()
        assert endpoint.secret in shown and old not in response.content.decode()
        assert endpoint.previous_secret == old and endpoint.verifying_secrets() == [endpoint.secret, old]
        assert stored_secret_column(endpoint) not in shown
    assert AuditEvent.objects.filter(action="webhook_endpoint.secret_rotated").count() == 2

    for page in [url(WebhookEndpoint, "changelist")] + [url(WebhookEndpoint, "change", e.pk) for e, _ in made]:
        text = staff_client.get(page).content.decode()
        assert not any(secret in text for secret in shown)


def test_saving_an_endpoint_goes_through_the_service_and_keeps_the_secret(staff_client, tenant, integration):
    endpoint, secret = services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                                data={"name": "Before"})
    form = {k: v for k, v in add_form(tenant, integration, name="After", signature_scheme="hmac_sha256").items()
            if k not in ("tenant", "integration", "path")}
    response = staff_client.post(url(WebhookEndpoint, "change", endpoint.pk), form)
    assert response.status_code == 302, response.content[:3000]
    endpoint.refresh_from_db()
    assert endpoint.name == "After" and endpoint.secret == secret
    assert AuditEvent.objects.filter(action="webhook_endpoint.updated").exists()


def test_deleting_in_the_admin_is_the_soft_delete(staff_client, tenant, integration):
    endpoint, _ = services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration, data={"name": "D"})
    response = staff_client.post(url(WebhookEndpoint, "delete", endpoint.pk), {"post": "yes"})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.deleted_at is not None and not endpoint.active


# --- events ----------------------------------------------------------------------------------------------------


@pytest.fixture
def endpoint(tenant, integration):
    return services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                    data={"name": "Events", "verify_signature": False})[0]


def accept(endpoint, body: bytes):
    return services.event_accept(endpoint=endpoint, body=body, headers={"x-github-event": "push"},
                                 content_type="application/json", source_ip="192.0.2.1", dedupe_key=None)[0]


def test_the_event_page_pretty_prints_a_json_body(staff_client, endpoint):
    event = accept(endpoint, b'{"b":{"c":[1,2]},"a":"caf\xc3\xa9 <b>"}')
    text = staff_client.get(url(WebhookEvent, "change", event.pk)).content.decode()
    pretty = json.dumps({"a": "café <b>", "b": {"c": [1, 2]}}, indent=2, ensure_ascii=False, sort_keys=True)
    escaped = pretty.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    assert f"<pre>{escaped}</pre>" in text
    assert "<b>" not in text.split("<pre>", 1)[1].split("</pre>", 1)[0]
    assert "x-github-event" in text


def test_the_event_page_shows_other_bodies_safely(staff_client, endpoint):
    plain = accept(endpoint, b"plain <text> body")
    binary = accept(endpoint, b"\xff\xfe\x00binary")
    assert "<pre>plain &lt;text&gt; body</pre>" in staff_client.get(url(WebhookEvent, "change", plain.pk)).content \
        .decode()
    assert "9 bytes, not UTF-8" in staff_client.get(url(WebhookEvent, "change", binary.pk)).content.decode()


def test_the_event_page_shows_a_body_nested_too_deep_to_pretty_print_as_text(staff_client, endpoint):
    deep = accept(endpoint, b"[" * 100_000 + b"]" * 100_000)
    response = staff_client.get(url(WebhookEvent, "change", deep.pk))
    assert response.status_code == 200
    assert "<pre>" + "[" * 1000 in response.content.decode()


def test_the_event_list_and_its_filters_render(staff_client, endpoint):
    event = accept(endpoint, b"{}")
    base = url(WebhookEvent, "changelist")
    for query in ("", "?status__exact=pending", f"?endpoint__id__exact={endpoint.pk}",
                  f"?tenant__id__exact={endpoint.tenant_id}", "?q=Events",
                  f"?received_at__year={event.received_at.year}"):
        response = staff_client.get(base + query)
        assert response.status_code == 200, query
        assert url(WebhookEvent, "change", event.pk) in response.content.decode(), query
    assert url(WebhookEvent, "change", event.pk) not in staff_client.get(base + "?status__exact=failed").content \
        .decode()


def test_events_cannot_be_added_changed_or_deleted(staff_client, endpoint):
    event = accept(endpoint, b"{}")
    assert staff_client.get(url(WebhookEvent, "add")).status_code == 403
    staff_client.post(url(WebhookEvent, "change", event.pk), {"status": "processed"})
    assert WebhookEvent.objects.get(pk=event.pk).status == "pending"
    assert staff_client.post(url(WebhookEvent, "delete", event.pk), {"post": "yes"}).status_code == 403


def test_the_replay_action_queues_finished_events_audits_and_reports_pending_ones(staff_client, endpoint,
                                                                               recorded_queue):
    done = accept(endpoint, b'{"x": 1}')
    services.event_process(event_id=done.pk)
    waiting = accept(endpoint, b'{"x": 2}')
    response = staff_client.post(url(WebhookEvent, "changelist"), {
        "action": "replay", "_selected_action": [str(done.pk), str(waiting.pk)],
    }, follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    assert "Queued again 1 webhook event" in text and "already waiting" in text
    assert WebhookEvent.objects.get(pk=done.pk).status == "pending"
    assert AuditEvent.objects.filter(action="webhook_event.replayed", target_id=str(done.pk)).count() == 1
    assert not AuditEvent.objects.filter(action="webhook_event.replayed", target_id=str(waiting.pk)).exists()
