"""State badges in the admin: a coloured pill that always carries its text, for every state of every choice
set shown, on the lists and on the pages; the stylesheet is ours, served locally."""
import re
from datetime import timedelta

import pytest
from django.contrib.staticfiles import finders
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone

from audit.choices import Outcome
from audit.models import AuditEvent
from audit.services import SYSTEM
from catalog.choices import ProviderStatus
from catalog.models import IntegrationProvider
from connections.choices import CredentialStatus, HealthState, IntegrationStatus, StreamState, UpdateMethod
from connections.models import Credential, Integration, StreamLease
from connections.services import credential_set
from integrations_site.admin import HUB_CSS, TONES, ChoiceBadges, badge
from tenants.models import ApiKey
from tenants.services import api_key_create, api_key_revoke
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from webhooks import services as webhook_services
from webhooks.choices import EventStatus
from webhooks.models import WebhookEvent

BADGE = re.compile(r'<span class="hub-badge hub-badge--(?P<tone>\w+)" data-value="(?P<value>[^"]*)">(?P<text>[^<]*)'
                   r"</span>")


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def shown_badges(response) -> set[tuple[str, str]]:
    """(value, text) of each badge on the page; every badge has a known tone and a text."""
    assert response.status_code == 200
    found = set()
    for match in BADGE.finditer(response.content.decode()):
        assert match["tone"] in TONES and match["text"].strip(), match.group(0)
        found.add((match["value"], match["text"]))
    return found


def every(choices) -> set[tuple[str, str]]:
    return {(value, str(label)) for value, label in choices.choices}


# --- the helper --------------------------------------------------------------------------------------------------


def test_a_badge_carries_its_text_escaped():
    assert badge("x", "<b>Bad</b>", "bad") == (
        '<span class="hub-badge hub-badge--bad" data-value="x">&lt;b&gt;Bad&lt;/b&gt;</span>'
    )
    with pytest.raises(ValueError):
        badge("x", "X", "purple")


def test_a_choice_set_without_a_tone_for_each_choice_is_refused():
    with pytest.raises(ImproperlyConfigured, match="unhealthy"):
        ChoiceBadges(HealthState, {"healthy": "ok", "degraded": "warn", "unknown": "neutral"})


def test_a_value_outside_the_choices_shows_as_itself_and_none_as_a_dash():
    badges = ChoiceBadges(Outcome, {o: "ok" for o in Outcome.values})
    assert BADGE.fullmatch(badges("legacy"))["text"] == "legacy"
    assert badges(None) == badges("") == "—"


def test_the_stylesheet_is_a_static_file_of_ours_linked_from_the_pages(staff_client, integration):
    assert finders.find(HUB_CSS), "hub.css is served from the project's own static files"
    for page in (admin_url(Integration, "changelist"), admin_url(Integration, "change", integration.pk)):
        html = staff_client.get(page).content.decode()
        assert re.search(r'<link href="/static/admin/hub\.css[^"]*"[^>]*rel="stylesheet"', html), page
        assert "cdn" not in html.lower()


# --- integrations, credentials, streams --------------------------------------------------------------------------


@pytest.fixture
def integrations(tenant, provider):
    """One integration per status, each with another health state (the two choice sets have 4 values each)."""
    return [
        IntegrationFactory(tenant=tenant, provider=provider, name=f"I {status}", status=status, health_state=health)
        for status, health in zip(IntegrationStatus.values, HealthState.values, strict=True)
    ]


def test_the_integration_list_badges_every_status_and_health_state(staff_client, integrations):
    shown = shown_badges(staff_client.get(admin_url(Integration, "changelist")))

    assert every(IntegrationStatus) <= shown and every(HealthState) <= shown


def test_the_integration_page_badges_its_status_and_health(staff_client, integrations):
    for integration in integrations:
        shown = shown_badges(staff_client.get(admin_url(Integration, "change", integration.pk)))
        assert (integration.status, integration.get_status_display()) in shown
        assert (integration.health_state, integration.get_health_state_display()) in shown


@pytest.fixture
def credentials(tenant, provider):
    made = []
    for status in CredentialStatus.values:
        integration = IntegrationFactory(tenant=tenant, provider=provider, name=f"C {status}")
        credential = credential_set(actor=SYSTEM, integration=integration, credential_type="bearer",
                                    data={"token": f"tok_{status}_0123456789abcdef"})
        Credential.objects.filter(pk=credential.pk).update(status=status)
        made.append(Credential.objects.get(pk=credential.pk))
    return made


def test_credential_statuses_are_badges_on_the_list_the_page_and_the_integration(staff_client, credentials):
    assert every(CredentialStatus) <= shown_badges(staff_client.get(admin_url(Credential, "changelist")))
    for credential in credentials:
        expected = (credential.status, credential.get_status_display())
        assert expected in shown_badges(staff_client.get(admin_url(Credential, "change", credential.pk)))
        assert expected in shown_badges(staff_client.get(admin_url(Integration, "change", credential.integration_id)))


def test_stream_states_are_badges_on_the_lease_list_the_lease_page_and_the_integration(staff_client, tenant,
                                                                                         provider):
    now = timezone.now()
    leases = []
    for state in StreamState.values:
        integration = IntegrationFactory(tenant=tenant, provider=provider, name=f"S {state}",
                                         update_method=UpdateMethod.SSE, stream_endpoint="/events")
        leases.append(StreamLease.objects.create(integration=integration, tenant=tenant, state=state,
                                                 consumer="host-a:1", lease_until=now + timedelta(seconds=30)))

    assert every(StreamState) <= shown_badges(staff_client.get(admin_url(StreamLease, "changelist")))
    for lease in leases:
        expected = (lease.state, lease.get_state_display())
        assert expected in shown_badges(staff_client.get(admin_url(StreamLease, "change", lease.pk)))
        assert expected in shown_badges(staff_client.get(admin_url(Integration, "change", lease.integration_id)))


# --- webhook events, providers, audit, API keys ------------------------------------------------------------------


def test_webhook_event_statuses_are_badges_on_the_list_and_the_page(staff_client, tenant, integration):
    endpoint, _ = webhook_services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                                   data={"name": "Events", "verify_signature": False})
    events = []
    for status in EventStatus.values:
        event, _ = webhook_services.event_accept(endpoint=endpoint, body=b"{}", headers={},
                                                 content_type="application/json", source_ip=None, dedupe_key=status)
        WebhookEvent.objects.filter(pk=event.pk).update(status=status)
        events.append((event.pk, status))

    assert every(EventStatus) <= shown_badges(staff_client.get(admin_url(WebhookEvent, "changelist")))
    for pk, status in events:
        assert (status, EventStatus(status).label) in shown_badges(
            staff_client.get(admin_url(WebhookEvent, "change", pk))
        )


def test_provider_statuses_are_badges_on_the_catalog_list(staff_client, db):
    for status in ProviderStatus.values:
        ProviderFactory(slug=f"p-{status}", name=f"P {status}", status=status)

    assert every(ProviderStatus) <= shown_badges(staff_client.get(admin_url(IntegrationProvider, "changelist")))


def test_audit_outcomes_are_badges_on_the_list_and_the_page(staff_client, tenant):
    for outcome in Outcome.values:
        AuditEvent.objects.create(actor="system", action="test.badge", target_type="x", target_id=outcome,
                                  target_repr=outcome, outcome=outcome, tenant=tenant)

    assert every(Outcome) <= shown_badges(staff_client.get(admin_url(AuditEvent, "changelist")))
    event = AuditEvent.objects.get(target_id="denied")
    assert ("denied", "Denied") in shown_badges(staff_client.get(admin_url(AuditEvent, "change", event.pk)))


def test_api_key_states_are_badges_on_the_list(staff_client, tenant):
    api_key_create(actor=SYSTEM, tenant=tenant, name="Usable", role="member")
    revoked, _ = api_key_create(actor=SYSTEM, tenant=tenant, name="Revoked", role="member")
    api_key_revoke(actor=SYSTEM, api_key=revoked)
    expired, _ = api_key_create(actor=SYSTEM, tenant=tenant, name="Expired", role="member")
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))

    shown = shown_badges(staff_client.get(admin_url(ApiKey, "changelist")))

    assert {("usable", "usable"), ("revoked", "revoked"), ("expired", "expired")} <= shown
