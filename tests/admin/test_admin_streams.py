"""Event streams in the admin: the "Stream" fieldset of an integration, the "Restart stream" action, and the
read-only lists of leases and consumers."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from connections.choices import IntegrationStatus, StreamState, UpdateMethod
from connections.models import Integration, StreamConsumer, StreamLease
from tests.connections.factories import IntegrationFactory


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def sse(tenant, provider):
    return IntegrationFactory(tenant=tenant, provider=provider, name="Feed", update_method=UpdateMethod.SSE,
                              stream_endpoint="/events", status=IntegrationStatus.CONNECTED)


def lease_for(integration, **fields) -> StreamLease:
    now = timezone.now()
    defaults = {"consumer": "host-a:101", "lease_until": now + timedelta(seconds=30), "state": StreamState.CONNECTED,
                "connected_at": now - timedelta(minutes=5)}
    return StreamLease.objects.create(integration=integration, tenant=integration.tenant, **{**defaults, **fields})


def fieldset_titles(response) -> list[str]:
    return [fieldset.name for fieldset in response.context["adminform"]]


# --- the "Stream" fieldset -----------------------------------------------------------------------------------


def test_an_sse_integrations_page_shows_the_stream_with_its_last_error_in_words(staff_client, sse):
    at = timezone.now() - timedelta(minutes=3)
    lease_for(sse, state=StreamState.BACKOFF, last_event_id="evt-42", events_total=17, reconnects=4,
              last_error={"code": "INVALID_CREDENTIALS", "message": "The stream answered 401.",
                          "at": at.isoformat()})

    response = staff_client.get(admin_url(Integration, "change", sse.pk))

    assert response.status_code == 200
    assert "Stream" in fieldset_titles(response)
    body = response.content.decode()
    assert "Backing off" in body and "host-a:101" in body and "evt-42" in body
    assert "<strong>INVALID_CREDENTIALS</strong>: The stream answered 401. (3\xa0minutes ago)" in body
    assert '"code"' not in body  # the error in words, not the raw JSON


def test_an_sse_integration_without_a_lease_shows_the_stream_connecting(staff_client, sse):
    response = staff_client.get(admin_url(Integration, "change", sse.pk))
    assert "Stream" in fieldset_titles(response)
    assert "Connecting" in response.content.decode()


def test_a_polling_integration_shows_no_stream_fieldset(staff_client, integration):
    response = staff_client.get(admin_url(Integration, "change", integration.pk))
    assert response.status_code == 200
    assert "Stream" not in fieldset_titles(response)


def test_a_polling_integration_with_a_lease_shows_it_stopped(staff_client, integration):
    lease_for(integration, events_total=3)
    response = staff_client.get(admin_url(Integration, "change", integration.pk))
    assert "Stream" in fieldset_titles(response)
    assert "Stopped" in response.content.decode()


def test_the_stream_fields_are_read_only_and_saving_the_page_leaves_the_lease(staff_client, sse):
    lease = lease_for(sse, events_total=5)
    form = staff_client.get(admin_url(Integration, "change", sse.pk)).context["adminform"].form
    assert not {name for name in form.fields if name.startswith("stream_") and name != "stream_endpoint"}
    lease.refresh_from_db()
    assert (lease.events_total, lease.consumer) == (5, "host-a:101")


# --- "Restart stream" ---------------------------------------------------------------------------------------


def test_restart_stream_on_integrations_asks_the_holder_and_audits_the_staff_user(
        staff_client, staff, sse, integration):
    lease_for(sse)

    response = staff_client.post(
        admin_url(Integration, "changelist"),
        {"action": "restart_stream", "_selected_action": [sse.pk, integration.pk]}, follow=True,
    )

    assert response.status_code == 200
    assert StreamLease.objects.get(pk=sse.pk).restart_requested
    event = AuditEvent.objects.get(action="integration.stream_restarted")
    assert (event.actor_user, event.target_id, event.tenant_id) == (staff, str(sse.pk), sse.tenant_id)
    messages = [str(m) for m in response.context["messages"]]
    assert "Asked 1 stream(s) to restart." in messages
    assert "Not restarted, no stream: 1 integration(s)." in messages


def test_restart_stream_on_the_lease_list_asks_each_selected_stream(staff_client, staff, sse, tenant, provider):
    other = IntegrationFactory(tenant=tenant, provider=provider, name="Other feed", update_method=UpdateMethod.SSE,
                               stream_endpoint="/more")
    lease_for(sse)
    left_alone = lease_for(other)

    response = staff_client.post(
        admin_url(StreamLease, "changelist"), {"action": "restart_stream", "_selected_action": [sse.pk]}, follow=True,
    )

    assert "Asked 1 stream(s) to restart." in [str(m) for m in response.context["messages"]]
    assert StreamLease.objects.get(pk=sse.pk).restart_requested
    left_alone.refresh_from_db()
    assert not left_alone.restart_requested
    audited = AuditEvent.objects.filter(action="integration.stream_restarted")
    assert list(audited.values_list("target_id", "actor_user")) == [(str(sse.pk), staff.pk)]


# --- the lists of leases and consumers -------------------------------------------------------------------------


def test_the_lease_list_shows_each_stream_filters_by_state_and_searches_by_integration(
        staff_client, sse, tenant, provider):
    quiet = IntegrationFactory(tenant=tenant, provider=provider, name="Quiet", update_method=UpdateMethod.SSE,
                               stream_endpoint="/quiet")
    lease_for(sse, events_total=17, reconnects=2, last_event_at=timezone.now())
    lease_for(quiet, state=StreamState.BACKOFF, consumer="", lease_until=None)

    listed = staff_client.get(admin_url(StreamLease, "changelist"))
    assert listed.status_code == 200
    assert {lease.pk for lease in listed.context["cl"].result_list} == {sse.pk, quiet.pk}
    assert "host-a:101" in listed.content.decode() and "Acme" in listed.content.decode()

    backoff = staff_client.get(admin_url(StreamLease, "changelist") + "?state__exact=backoff")
    assert [lease.pk for lease in backoff.context["cl"].result_list] == [quiet.pk]
    found = staff_client.get(admin_url(StreamLease, "changelist") + "?q=Feed")
    assert [lease.pk for lease in found.context["cl"].result_list] == [sse.pk]


def test_the_lease_list_query_count_does_not_grow_with_rows(staff_client, tenant, provider):
    def add(n, tag):
        for i in range(n):
            lease_for(IntegrationFactory(tenant=tenant, provider=provider, name=f"{tag} {i}",
                                         update_method=UpdateMethod.SSE, stream_endpoint="/e"))

    add(3, "few")
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get(admin_url(StreamLease, "changelist")).status_code == 200
    add(20, "many")
    with CaptureQueriesContext(connection) as many:
        assert staff_client.get(admin_url(StreamLease, "changelist")).status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)


def test_a_lease_page_is_read_only_with_its_last_error_in_words(staff_client, sse):
    lease = lease_for(sse, last_error={"code": "TIMEOUT", "message": "No bytes for 90 s.",
                                       "at": timezone.now().isoformat()})

    response = staff_client.get(admin_url(StreamLease, "change", lease.pk))

    assert response.status_code == 200
    body = response.content.decode()
    assert "<strong>TIMEOUT</strong>: No bytes for 90 s." in body and "ago)" in body
    assert 'name="_save"' not in body
    assert staff_client.get(admin_url(StreamLease, "add")).status_code == 403
    assert staff_client.post(admin_url(StreamLease, "delete", lease.pk), {"post": "yes"}).status_code == 403
    assert StreamLease.objects.filter(pk=lease.pk).exists()


def test_the_consumer_list_and_page_render_read_only(staff_client, db):
    now = timezone.now()
    consumer = StreamConsumer.objects.create(name="host-a:101", hostname="host-a", pid=101,
                                             started_at=now - timedelta(hours=1), seen_at=now, streams=7)

    listed = staff_client.get(admin_url(StreamConsumer, "changelist"))
    assert listed.status_code == 200
    assert [c.pk for c in listed.context["cl"].result_list] == [consumer.pk]
    page = staff_client.get(admin_url(StreamConsumer, "change", consumer.pk))
    assert page.status_code == 200 and "host-a" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert staff_client.get(admin_url(StreamConsumer, "add")).status_code == 403
