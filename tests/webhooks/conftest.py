"""Fixtures for the webhook tests: endpoints made through the service, and the queue edge recorded."""
import pytest

from audit.services import SYSTEM
from webhooks import services
from webhooks.tasks import process_webhook_events


@pytest.fixture
def queued(settings, monkeypatch):
    """Hand-offs go one task per event, and the broker call is recorded instead of sent."""
    settings.WEBHOOK_HANDOFF = "immediate"
    sent: list[list[str]] = []
    monkeypatch.setattr(process_webhook_events, "delay", lambda ids: sent.append(list(ids)))
    return sent


@pytest.fixture
def make_endpoint(tenant, integration):
    """``make_endpoint(scheme, **fields)`` → (endpoint, secret)."""
    counter = iter(range(1, 10_000))

    def make(scheme: str = "hmac_sha256", **data):
        data.setdefault("name", f"hook {next(counter)}")
        return services.endpoint_create(
            actor=SYSTEM, tenant=tenant, integration=data.pop("integration", integration),
            data={"signature_scheme": scheme, **data},
        )

    return make
