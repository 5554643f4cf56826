"""Reads that more than one caller needs, and the one credential lookup every part of the app uses."""
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, F, FilteredRelation, OuterRef, Prefetch, Q
from django.utils import timezone

from integrations_site.nearcache import ALL, PostgresNearCache
from integrations_site.prepared import Prepared

from .models import ConnectionCheck, Credential, Integration

# Provider columns an integration's answer never shows: not loaded (nor decrypted) per row.
PROVIDER_DEFERRED = tuple(
    f"provider__{name}" for name in (
        "description", "capabilities", "supported_sync_directions", "searchable_entities", "available_entities",
        "oauth_config", "oauth_client_secret", "credential_fields", "default_status_mapping",
    )
)


# --- credentials -----------------------------------------------------------------------------------------------
# An integration has one tenant-wide credential (user NULL) and, when it is user-scoped, one per connected user.


def tenant_credentials(**filters):
    """Tenant-wide credentials (no user's own connection), narrowed by ``filters``."""
    return Credential.objects.filter(user__isnull=True, **filters)


def user_credentials(**filters):
    """Users' own connections to user-scoped integrations, narrowed by ``filters``."""
    return Credential.objects.filter(user__isnull=False, **filters)


def credential_of(integration: Integration, user=None, *, lock: bool = False) -> Credential | None:
    """The credential stored on ``integration`` for ``user`` (None: the tenant-wide one).

    ``lock`` holds the row (SELECT … FOR UPDATE) until the transaction ends.
    """
    rows = tenant_credentials() if user is None else user_credentials(user=user)
    if lock:
        rows = rows.select_for_update()
    return rows.filter(integration=integration).first()


def credential_for(integration: Integration, user=None) -> Credential | None:
    """The credential a call uses: the calling user's own on a user-scoped integration, else the tenant's."""
    own = integration.user_scoped and getattr(user, "pk", None)
    return credential_of(integration, user if own else None)


def tenant_credential(integration: Integration) -> Credential | None:
    """The tenant-wide credential, from ``integration_list_queryset``'s prefetch when it was loaded."""
    if hasattr(integration, "tenant_credentials"):
        found = integration.tenant_credentials
        return found[0] if found else None
    return credential_of(integration)


def has_tenant_credential() -> Exists:
    """An annotation: the integration (the outer row) has a tenant-wide credential with its secrets set."""
    return Exists(tenant_credentials(integration=OuterRef("pk"), payload__isnull=False))


# --- integrations ----------------------------------------------------------------------------------------------


def integration_list_queryset():
    """Live integrations with provider and tenant-wide credential loaded (no N+1).

    The credential's encrypted payload is not loaded: answers show only its
    type, hint, status and version, and whether it is set.
    """
    credentials = tenant_credentials().defer("payload").annotate(
        payload_present=ExpressionWrapper(Q(payload__isnull=False), output_field=BooleanField())
    )
    return (
        Integration.objects.live()
        .select_related("provider")
        .defer(*PROVIDER_DEFERRED)
        .prefetch_related(Prefetch("credentials", queryset=credentials, to_attr="tenant_credentials"))
    )


# What a row of ``integration_rows`` holds of the tenant-wide credential, beside the integration's columns.
CREDENTIAL_SUMMARY = ("type", "hint", "status", "version")


def integration_rows(queryset, columns: list[str]):
    """``queryset`` (of ``integration_list_queryset``) as ``values()`` rows of ``columns``, each with
    ``credential_set`` and ``credential_<type|hint|status|version>`` of the tenant-wide credential: one
    query, the credential joined in (an integration has at most one tenant-wide credential)."""
    return (
        queryset.prefetch_related(None)
        .annotate(
            tenant_credential=FilteredRelation("credentials", condition=Q(credentials__user__isnull=True)),
            credential_set=ExpressionWrapper(Q(tenant_credential__payload__isnull=False),
                                             output_field=BooleanField()),
            **{f"credential_{name}": F(f"tenant_credential__{name}") for name in CREDENTIAL_SUMMARY},
        )
        .values(*columns, "credential_set", *(f"credential_{name}" for name in CREDENTIAL_SUMMARY))
    )


def _tenant_integration_rows(columns, tenant):
    return integration_rows(integration_list_queryset().for_tenant(tenant), list(columns))


# A tenant's page of ``integration_rows``, its total and one integration, compiled once per process and shape
# (integrations_site/prepared.py); a page's shape is ``(columns, ordering)``, a single row's ``columns``.
TENANT_INTEGRATION_PAGE = Prepared(
    lambda shape, tenant: _tenant_integration_rows(shape[0], tenant).order_by(*shape[1]), ids=("tenant",)
)
TENANT_INTEGRATION_TOTAL = Prepared(
    lambda shape, tenant: integration_list_queryset().for_tenant(tenant).order_by().values("pk"), ids=("tenant",)
)
TENANT_INTEGRATION = Prepared(
    lambda columns, tenant, pk: _tenant_integration_rows(columns, tenant).filter(pk=pk), ids=("tenant", "pk")
)

# On PostgreSQL each web process keeps the rows it read for one integration, forgotten the moment a write to
# the integration, its credentials or its provider commits, whoever made it (triggers notify
# ``ih_integration_changed``: migration connections/0011; integrations_site/nearcache.py).
INTEGRATION_COPIES = PostgresNearCache("ih_integration_changed")
INTEGRATION_COPY_SECONDS = 300


COPIED_TABLES = ("connections_integration", "connections_credential", "catalog_integrationprovider")


def forget_written_copies(execute, sql, params, many, context):
    """A database connection's execute wrapper: a write to ``COPIED_TABLES`` made in this process forgets its
    copies before it runs, so this process reads its own writes at once; every other process forgets them
    when the write commits and is notified."""
    head = sql if sql.startswith("TRUNCATE") else sql[:96]  # a TRUNCATE names many tables
    if head.startswith(("UPDATE", "INSERT", "DELETE", "TRUNCATE")) and any(table in head for table in COPIED_TABLES):
        INTEGRATION_COPIES.forget([ALL])
    return execute(sql, params, many, context)


def watch_writes(sender, connection, **kwargs) -> None:
    """On each new PostgreSQL connection (``connection_created``): ``forget_written_copies`` wraps its cursors.
    First in the list, so that ``execute_wrapper()`` blocks open at the time still pop their own."""
    if connection.vendor == "postgresql" and forget_written_copies not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, forget_written_copies)


def tenant_integration_rows(columns: tuple, tenant, pk) -> list[dict]:
    """``TENANT_INTEGRATION``'s rows of integration ``pk`` of ``tenant``: this process's copy when it has one.

    Never inside a transaction, which may have written the row (its change is notified only when it commits).
    Raises ValueError when ``pk`` is no UUID."""
    if not settings.INTEGRATION_NEAR_CACHE or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return TENANT_INTEGRATION.rows(columns, limit=1, tenant=tenant, pk=pk)
    name, shape = str(uuid.UUID(str(pk))), (columns, str(tenant))
    copy = INTEGRATION_COPIES.get(name)
    if copy is not None and copy[0] == shape:
        return copy[1]
    generation = INTEGRATION_COPIES.generation()
    rows = TENANT_INTEGRATION.rows(columns, limit=1, tenant=tenant, pk=pk)
    if rows:
        INTEGRATION_COPIES.put(name, (shape, rows), INTEGRATION_COPY_SECONDS, generation)
    return rows


def credential_summary(row: dict) -> dict | None:
    """The ``credential`` an integration's answer shows, from an ``integration_rows`` row."""
    if not row["credential_set"]:
        return None
    return {name: row[f"credential_{name}"] for name in CREDENTIAL_SUMMARY}


def integration_health(integration: Integration) -> dict:
    """The cached health state plus the success rate of the last 24 hours (one query)."""
    since = timezone.now() - timedelta(hours=24)
    stats = ConnectionCheck.objects.filter(
        integration=integration, created_at__gte=since, success__isnull=False
    ).aggregate(total=Count("id"), ok=Count("id", filter=Q(success=True)))
    last_error = integration.last_error or None
    return {
        "state": integration.health_state,
        "health_checked_at": integration.health_checked_at,
        "consecutive_failures": integration.consecutive_failures,
        "failing_since": integration.failing_since,
        "last_success_at": integration.last_success_at,
        "last_error": {"code": last_error["code"], "message": last_error["message"]} if last_error else None,
        "success_rate_24h": round(stats["ok"] / stats["total"], 4) if stats["total"] else None,
        "checks_24h": stats["total"],
        "next_check_at": integration.next_check_at,
    }


def integration_widget_status(integration: Integration) -> dict:
    """The status widget: where the integration stands, in one small object."""
    credential = credential_of(integration)
    error = (integration.last_error or {}).get("message") if integration.status == "error" else None
    if credential is not None and credential.status in ("expired", "revoked", "error") and not error:
        error = credential.validation_error or f"The credential is {credential.status}."
    return {
        "integration_id": integration.pk,
        "name": integration.name,
        "status": integration.status,
        "connection_status": credential.status if credential is not None and credential.is_set else None,
        "health_state": integration.health_state,
        "last_connected_at": integration.last_success_at,
        "last_sync_at": integration.last_polled_at,
        "error": error,
    }
