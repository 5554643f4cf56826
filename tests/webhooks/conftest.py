"""Fixtures for the webhook tests: endpoints made through the service, and the queue edge recorded."""
import pytest

from audit.services import SYSTEM
from webhooks import services
from webhooks.services.handoff import PROCESS_EVENTS


@pytest.fixture
def queued(settings, sent_tasks):
    """Hand-offs go one task per event, and the broker call is recorded instead of sent."""
    settings.WEBHOOK_HANDOFF = "immediate"
    return sent_tasks[PROCESS_EVENTS]


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
