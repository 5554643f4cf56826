"""Writing the audit trail. Every state-changing service calls ``audit_record``."""
from dataclasses import dataclass
from typing import Any

from django.db import models

from integrations_site.api.middleware import current_client_ip, current_request_id

from .choices import REDACTED, Outcome
from .models import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, an API key, or the system (neither)."""

    user: Any = None
    api_key: Any = None

    @property
    def label(self) -> str:
        if self.api_key is not None:
            return f"api-key:{self.api_key.name} ({self.api_key.display})"
        if self.user is not None:
            return self.user.get_username()
        return "system"


SYSTEM = Actor()


def redact_changes(changes: dict, secret_fields: set[str] | frozenset[str] = frozenset()) -> dict:
    """Keep field names; replace the values of secret fields."""
    return {
        name: (REDACTED if name in secret_fields else value)
        for name, value in changes.items()
    }


def audit_record(
    *,
    actor: Actor,
    action: str,
    target: models.Model | None = None,
    tenant=None,
    outcome: str = Outcome.SUCCESS,
    changes: dict | None = None,
    secret_fields: frozenset[str] = frozenset(),
) -> AuditEvent:
    """Write one audit event; request id and IP come from the current request."""
    if tenant is None and target is not None:
        tenant = getattr(target, "tenant", None)
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_user=actor.user if getattr(actor.user, "pk", None) else None,
        actor_api_key=actor.api_key,
        actor=actor.label[:200],
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:255] if target is not None else "",
        outcome=outcome,
        changes=redact_changes(changes or {}, secret_fields),
        request_id=current_request_id() if current_request_id() != "-" else "",
        ip=current_client_ip(),
    )
