"""Seed 000: a tenant admin takes an integration through its whole life over the API."""
from audit.models import AuditEvent
from connections.models import Credential, Integration
from tenants.choices import Role

URL = "/api/v1/integrations/"
TOKEN = "tok_journey_live_0123456789abcd"


def test_create_enable_set_credentials_connect_disable_delete_is_audited_in_order(client_for, provider, tenant):
    api = client_for(Role.TENANT_ADMIN.value)
    username = f"{Role.TENANT_ADMIN.value}-{tenant.slug}"

    def step(request_id, method, path, payload=None):
        kwargs = {"format": "json", "HTTP_X_REQUEST_ID": request_id}
        response = getattr(api, method)(path, payload, **kwargs) if payload is not None else \
            getattr(api, method)(path, **kwargs)
        assert response["X-Request-ID"] == request_id
        return response

    created = step("journey-create", "post", URL, {
        "provider": provider.slug, "name": "Journey", "update_method": "polling", "polling_interval_seconds": 30,
    })
    assert created.status_code == 201, created.content
    body = created.json()
    integration_id = body["id"]
    base = f"{URL}{integration_id}/"
    assert (body["status"], body["health_state"], body["has_credentials"], body["credential"]) == (
        "pending", "unknown", False, None
    )

    # A new integration is already enabled (pending): enabling it changes no state, but is audited.
    enabled = step("journey-enable", "post", f"{base}enable")
    assert enabled.status_code == 200, enabled.content
    assert enabled.json()["status"] == "pending"

    credentials = step("journey-credentials", "put", f"{base}credentials", {"type": "bearer", "token": TOKEN})
    assert credentials.status_code == 200, credentials.content
    assert {k: credentials.json()[k] for k in ("has_credentials", "type", "hint", "status", "version")} == {
        "has_credentials": True, "type": "bearer", "hint": "abcd", "status": "active", "version": 1,
    }

    conn = step("journey-connection", "get", f"{base}connection")
    assert conn.status_code == 200
    shown_keys = ("status", "has_credentials", "type", "hint", "version", "last_validated_at")
    assert {k: conn.json()[k] for k in shown_keys} == {
        "status": "active", "has_credentials": True, "type": "bearer", "hint": "abcd", "version": 1,
        "last_validated_at": None,
    }

    disabled = step("journey-disable", "post", f"{base}disable")
    assert disabled.status_code == 200
    assert disabled.json()["status"] == "disabled"
    assert disabled.json()["credential"] == {"type": "bearer", "hint": "abcd", "status": "active", "version": 1}

    deleted = step("journey-delete", "delete", base)
    assert deleted.status_code == 204
    gone = step("journey-gone", "get", base)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "INTEGRATION_NOT_FOUND"
    assert gone.json()["error"]["request_id"] == "journey-gone"
    assert Integration.objects.get(pk=integration_id).deleted_at is not None
    assert Credential.objects.get(integration_id=integration_id).payload is None

    events = list(AuditEvent.objects.filter(target_id=integration_id).order_by("created_at"))
    assert [(e.action, e.request_id) for e in events] == [
        ("integration.created", "journey-create"),
        ("integration.enabled", "journey-enable"),
        ("credential.set", "journey-credentials"),
        ("integration.disabled", "journey-disable"),
        ("integration.deleted", "journey-delete"),
    ]
    for event in events:
        assert event.actor == username
        assert event.actor_user.username == username
        assert event.tenant == tenant
        assert event.outcome == "success"
        assert event.target_type == "connections.integration"
        assert TOKEN not in str(event.changes)
    assert events[1].changes == {}
    assert events[2].changes["token"] == "[redacted]"
    assert events[3].changes == {"status": {"from": "pending", "to": "disabled"},
                                 "disabled_reason": {"from": "", "to": "manual"}}

    # The tenant's own audit trail shows the same story, newest first.
    trail = api.get("/api/v1/audit-events/", {"limit": 100})
    assert trail.status_code == 200, trail.content
    shown = [row["action"] for row in trail.json()["results"] if row.get("target_id") == integration_id]
    assert shown == [
        "integration.deleted", "integration.disabled", "credential.set", "integration.enabled", "integration.created"
    ]
