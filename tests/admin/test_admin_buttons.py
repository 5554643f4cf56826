"""Buttons on the change pages: each a POST form with CSRF, shown only where it applies and to staff who may
change the object, running the same service as the API and showing its result on the page."""
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections.choices import StreamState, UpdateMethod
from connections.models import ConnectionCheck, ExternalStatus, Integration, StreamLease
from tests.connections.factories import IntegrationFactory
from tests.journeys.conftest import SwitchableServer
from tests.tenants.factories import UserFactory
from tests.webhooks.signing import signed_headers
from webhooks import services as webhook_services
from webhooks.models import WebhookEndpoint, WebhookEvent
from webhooks.services.handoff import PROCESS_EVENTS

BUTTON = re.compile(r'<form class="hub-button-form" method="post" action="(?P<url>[^"]+)">'
                    r'(?P<csrf><input type="hidden" name="csrfmiddlewaretoken" value="[^"]+">)'
                    r'<button type="submit" class="hub-button">(?P<label>[^<]+)</button></form>')


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def buttons(client, model, obj) -> dict[str, str]:
    """Label → URL of the buttons on ``obj``'s change page."""
    response = client.get(admin_url(model, "change", obj.pk))
    assert response.status_code == 200
    return {m["label"]: m["url"] for m in BUTTON.finditer(response.content.decode())}


def messages_of(response) -> str:
    return " ".join(re.findall(r'<ul class="messagelist">(.*?)</ul>', response.content.decode(), re.S))


def state_block(response) -> str:
    html = response.content.decode()
    start = html.index(">State</h2>")
    return html[start:html.index("</fieldset>", start)]


@pytest.fixture(autouse=True)
def queue(sent_tasks, settings):
    settings.WEBHOOK_HANDOFF = "immediate"
    return sent_tasks


@pytest.fixture
def server():
    server = SwitchableServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def reachable(integration, server, settings):
    """The integration's API is a real HTTP server on 127.0.0.1, which the outbound policy is told to allow."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    Integration.objects.filter(pk=integration.pk).update(api_base_url=server.url, test_endpoint="/ping",
                                                         retry_count=0)
    integration.refresh_from_db()
    return integration


@pytest.fixture
def viewer_client(db):
    """Staff who may view integrations and webhooks, and change none of them."""
    user = UserFactory(username="viewer", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_integration", "view_webhookevent", "view_webhookendpoint"]
    ))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def endpoint(tenant, integration):
    return webhook_services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                            data={"name": "Events", "signature_scheme": "github"})


def accepted_event(endpoint, status: str, **fields) -> WebhookEvent:
    event, _ = webhook_services.event_accept(endpoint=endpoint, body=b'{"x": 1}', headers={},
                                             content_type="application/json", source_ip=None, dedupe_key=None)
    WebhookEvent.objects.filter(pk=event.pk).update(status=status, **fields)
    return WebhookEvent.objects.get(pk=event.pk)


# --- Test connection -----------------------------------------------------------------------------------------


def test_test_connection_runs_the_test_now_and_shows_its_result_on_the_page(staff_client, staff, reachable,
                                                                             server):
    url = buttons(staff_client, Integration, reachable)["Test connection"]

    response = staff_client.post(url, follow=True)

    assert response.redirect_chain == [(admin_url(Integration, "change", reachable.pk), 302)]
    assert server.hits == 1
    check = ConnectionCheck.objects.get(integration=reachable)
    assert (check.kind, check.success, check.status_code, check.requested_by) == ("test", True, 200, "staff")
    assert AuditEvent.objects.get(action="integration.tested", target_id=str(reachable.pk)).actor_user == staff
    said = messages_of(response)
    assert 'class="success"' in said and 'data-value="ok">OK</span> HTTP 200 · ' in said and " ms " in said
    assert 'data-value="ok">OK</span> HTTP 200' in state_block(response)  # the State's last check
    assert 'data-value="healthy">Healthy</span>' in state_block(response)


def test_a_failing_test_connection_says_why_on_the_page(staff_client, reachable, server):
    server.answer(503)

    response = staff_client.post(admin_url(Integration, "test_connection", reachable.pk), follow=True)

    check = ConnectionCheck.objects.get(integration=reachable)
    assert (check.success, check.status_code, check.error_code) == (False, 503, "UNEXPECTED_STATUS")
    said = messages_of(response)
    assert 'class="error"' in said
    assert 'data-value="failed">Failed</span> HTTP 503 · ' in said and "<strong>UNEXPECTED_STATUS</strong>: " in said
    state = state_block(response)
    assert "HTTP 503" in state and "<strong>UNEXPECTED_STATUS</strong>" in state
    assert '"code"' not in state


# --- Poll now ------------------------------------------------------------------------------------------------


@pytest.fixture
def pollable(integration, httpserver, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    Integration.objects.filter(pk=integration.pk).update(
        api_base_url=httpserver.url_for("/").rstrip("/"), status_endpoint="/statuses", retry_count=0,
        status_mapping={"available": ["open"], "sold": ["sold"]},
    )
    integration.refresh_from_db()
    return integration


def test_poll_now_polls_the_status_endpoint_and_says_what_it_saw(staff_client, staff, pollable, httpserver):
    httpserver.expect_request("/statuses").respond_with_json(
        [{"id": "a", "status": "open"}, {"id": "b", "status": "sold"}, {"id": "c", "status": "weird"}]
    )

    response = staff_client.post(buttons(staff_client, Integration, pollable)["Poll now"], follow=True)

    assert "Polled: 3 seen, 0 changed, unknown raw statuses: weird (1)." in messages_of(response)
    assert ExternalStatus.objects.filter(integration=pollable).count() == 3
    assert AuditEvent.objects.get(action="integration.polled", target_id=str(pollable.pk)).actor_user == staff


def test_a_failed_poll_is_an_error_message_not_a_500(staff_client, pollable, httpserver):
    httpserver.expect_request("/statuses").respond_with_data("down", status=500)

    response = staff_client.post(admin_url(Integration, "poll_now", pollable.pk), follow=True)

    assert response.status_code == 200
    assert 'class="error"' in messages_of(response) and "Poll failed: <strong>" in messages_of(response)
    assert not ExternalStatus.objects.exists()


# --- Restart stream ------------------------------------------------------------------------------------------


@pytest.fixture
def sse(tenant, provider):
    return IntegrationFactory(tenant=tenant, provider=provider, name="Feed", update_method=UpdateMethod.SSE,
                              stream_endpoint="/events")


def test_restart_stream_asks_the_holder_to_reconnect(staff_client, staff, sse):
    lease = StreamLease.objects.create(integration=sse, tenant=sse.tenant, consumer="host-a:1",
                                       state=StreamState.CONNECTED, lease_until=timezone.now() + timedelta(seconds=30))

    response = staff_client.post(buttons(staff_client, Integration, sse)["Restart stream"], follow=True)

    assert "Asked the stream to restart" in messages_of(response)
    lease.refresh_from_db()
    assert lease.restart_requested is True
    assert AuditEvent.objects.get(action="integration.stream_restarted").actor_user == staff


def test_restart_stream_without_a_consumer_says_there_is_nothing_to_restart(staff_client, sse):
    response = staff_client.post(admin_url(Integration, "restart_stream", sse.pk), follow=True)

    assert 'class="warning"' in messages_of(response) and "nothing to restart" in messages_of(response)
    assert not AuditEvent.objects.filter(action="integration.stream_restarted").exists()


# --- Replay --------------------------------------------------------------------------------------------------


def test_replay_moves_a_failed_event_back_to_be_processed(staff_client, staff, endpoint, queue,
                                                          django_capture_on_commit_callbacks):
    event = accepted_event(endpoint[0], "failed", attempts=5, last_error="boom")

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(buttons(staff_client, WebhookEvent, event)["Replay"], follow=True)

    assert response.redirect_chain == [(admin_url(WebhookEvent, "change", event.pk), 302)]
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("pending", 0)
    assert queue[PROCESS_EVENTS] == [[str(event.pk)]]  # handed to the worker once committed
    assert AuditEvent.objects.get(action="webhook_event.replayed", target_id=str(event.pk)).actor_user == staff
    assert "Queued again" in messages_of(response)
    assert 'data-value="pending">Pending</span>' in response.content.decode()


# --- Rotate secret -------------------------------------------------------------------------------------------


def test_rotate_secret_shows_the_new_secret_once_and_the_old_keeps_verifying(staff_client, staff, endpoint,
                                                                              client):
    endpoint, old = endpoint

    response = staff_client.post(buttons(staff_client, WebhookEndpoint, endpoint)["Rotate secret"])

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    (new,) = re.findall(r"<code[^>]*>([^<]+)</code>", response.content.decode())
    endpoint.refresh_from_db()
    assert endpoint.secret == new != old and endpoint.previous_secret == old
    assert endpoint.previous_secret_expires_at > timezone.now() + timedelta(hours=23)
    assert "keeps verifying until" in response.content.decode()
    assert AuditEvent.objects.get(action="webhook_endpoint.secret_rotated").actor_user == staff
    # A real delivery signed with either secret is accepted during the grace; another secret is not.
    for n, (secret, status) in enumerate(((old, 202), (new, 202), ("not-the-secret", 401))):
        body = f'{{"id": "evt_{n}", "status": "open"}}'.encode()
        delivered = client.post(endpoint.url_path, body, content_type="application/json",
                                headers=signed_headers(endpoint.signature_scheme, secret, body))
        assert delivered.status_code == status, delivered.content
    assert new not in staff_client.get(admin_url(WebhookEndpoint, "change", endpoint.pk)).content.decode()


# --- where the buttons are, and who may press them ---------------------------------------------------------------


def test_the_buttons_appear_only_where_they_apply(staff_client, tenant, provider, integration, sse, endpoint):
    pollable = IntegrationFactory(tenant=tenant, provider=provider, name="Polled", status_endpoint="/statuses")
    webhook_fed = IntegrationFactory(tenant=tenant, provider=provider, name="Pushed", status_endpoint="/statuses",
                                     update_method=UpdateMethod.WEBHOOK)
    deleted = IntegrationFactory(tenant=tenant, provider=provider, name="Gone", deleted_at=timezone.now())

    assert set(buttons(staff_client, Integration, integration)) == {"Test connection"}
    assert set(buttons(staff_client, Integration, pollable)) == {"Test connection", "Poll now"}
    assert set(buttons(staff_client, Integration, webhook_fed)) == {"Test connection"}
    assert set(buttons(staff_client, Integration, sse)) == {"Test connection", "Restart stream"}
    assert buttons(staff_client, Integration, deleted) == {}
    for status, shown in (("pending", {}), ("processing", {}), ("processed", {"Replay"}), ("failed", {"Replay"})):
        assert set(buttons(staff_client, WebhookEvent, accepted_event(endpoint[0], status))) == set(shown), status
    assert set(buttons(staff_client, WebhookEndpoint, endpoint[0])) == {"Rotate secret"}
    WebhookEndpoint.objects.filter(pk=endpoint[0].pk).update(deleted_at=timezone.now())
    assert buttons(staff_client, WebhookEndpoint, endpoint[0]) == {}


def test_a_button_pressed_where_it_does_not_apply_changes_nothing(staff_client, integration, endpoint):
    pending = accepted_event(endpoint[0], "pending")

    polled = staff_client.post(admin_url(Integration, "poll_now", integration.pk), follow=True)
    replayed = staff_client.post(admin_url(WebhookEvent, "replay", pending.pk), follow=True)

    assert "Poll now: does not apply" in messages_of(polled)
    assert "Replay: does not apply" in messages_of(replayed)
    assert not AuditEvent.objects.filter(action__in=["integration.polled", "webhook_event.replayed"]).exists()


def button_urls(integration, sse, event, endpoint) -> list[str]:
    return [
        admin_url(Integration, "test_connection", integration.pk), admin_url(Integration, "poll_now", integration.pk),
        admin_url(Integration, "restart_stream", sse.pk), admin_url(WebhookEvent, "replay", event.pk),
        admin_url(WebhookEndpoint, "rotate_secret", endpoint.pk),
    ]


def test_a_get_is_405_and_runs_nothing(staff_client, reachable, server, sse, endpoint):
    failed = accepted_event(endpoint[0], "failed")
    for url in button_urls(reachable, sse, failed, endpoint[0]):
        response = staff_client.get(url)
        assert response.status_code == 405, url
        assert response["Allow"] == "POST"
    assert server.hits == 0 and not ConnectionCheck.objects.exists()
    assert WebhookEvent.objects.get(pk=failed.pk).status == "failed"
    assert WebhookEndpoint.objects.get(pk=endpoint[0].pk).secret == endpoint[1]


def test_staff_without_change_permission_see_no_buttons_and_get_403(viewer_client, reachable, server, sse,
                                                                     endpoint):
    failed = accepted_event(endpoint[0], "failed")
    assert buttons(viewer_client, Integration, reachable) == {}
    assert buttons(viewer_client, WebhookEvent, failed) == {}
    assert buttons(viewer_client, WebhookEndpoint, endpoint[0]) == {}

    for url in button_urls(reachable, sse, failed, endpoint[0]):
        assert viewer_client.post(url).status_code == 403, url
    assert server.hits == 0 and not ConnectionCheck.objects.exists()
    assert WebhookEvent.objects.get(pk=failed.pk).status == "failed"
    assert WebhookEndpoint.objects.get(pk=endpoint[0].pk).secret == endpoint[1]


def test_a_post_without_the_csrf_token_is_refused(staff, reachable, server):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)

    assert client.post(admin_url(Integration, "test_connection", reachable.pk)).status_code == 403
    assert server.hits == 0


def test_non_staff_are_sent_to_the_login_page(client, reachable, server):
    response = client.post(admin_url(Integration, "test_connection", reachable.pk))

    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    assert server.hits == 0
