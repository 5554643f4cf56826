"""Property-based API checks: Schemathesis drives every operation of the served schema.

The schema is read from ``/api/schema/`` of the real WSGI application, and
every generated request goes through that application in-process (middleware,
authentication, views, PostgreSQL). Every check Schemathesis has runs: no
5xx; status codes, content types, headers and bodies as documented; a request
the schema allows is accepted and one it forbids is refused; undeclared
methods answer 405 with ``Allow``; declared auth is enforced. Where the API
applies a rule that no schema can state (a date in the future, a field that
depends on another or on stored state), CONFIG names the operation and the
rule, and only there may a schema-valid request be answered 400.

Tenant operations run as a tenant admin of ``acme``; ``/api/v1/admin/…`` runs
as a super admin so those operations reach their views instead of stopping at
403. Half the time, path parameters are swapped for the ids of real rows so
that detail views, actions and writes run against data, not only into 404.

Outbound calls (connection tests, polls) reach only a local HTTP server: the
fixture integration points at it, and name resolution of anything but a
loopback address fails for the whole test.
"""
import os
import socket

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, assume
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode

from audit.models import AuditEvent
from audit.services import Actor
from catalog.services import provider_create
from connections import services as connection_services
from integrations_site.wsgi import application
from tenants.authentication import TENANT_CLAIM
from tenants.choices import Role
from tenants.services import api_key_create, tenant_create
from tests.tenants.factories import MembershipFactory, UserFactory

# Statuses a schema-valid request may get where a rule beyond the schema applies (default, plus 400).
VALID_BUT_REFUSED = '["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]'
CONFIG = SchemathesisConfig.from_str(f"""
[generation]
# Text with a NUL character (U+0000) is refused everywhere (PostgreSQL cannot store it); the document's
# description says so.
allow-x00 = false

# Rules that depend on another field, on stored state or on the clock. A schema-valid request may be refused
# with 400 here (and only here):
# - admin_providers_test_create: a system test needs a system-audience provider (the fixture's is a tenant one);
# - admin_providers_create/_partial_update: a raw status maps to one canonical status only, and credential
#   field names are unique;
# - api_keys_create: expires_at must be in the future;
# - integrations_create/_update/_partial_update: a test or status endpoint given as a path needs an api_base_url
#   (the integration's or its provider's), a raw status maps to one canonical status only, and the provider
#   of an integration cannot change;
# - *_connect_oauth_create: the provider needs an OAuth2 configuration, the return URL a host of the tenant's
#   allowed_return_hosts;
# - integrations_credentials_update: custom credentials must match the provider's credential_fields;
# - integrations_credentials_partial_update: only fields of the stored credential's type can change;
# - integrations_usage_retrieve: `from` must not be after `to`;
# - oauth_callback_retrieve: `state` must be one this server issued (else the HTML error page);
# - webhooks_create, webhooks_rotate_secret_create: a standard_webhooks secret is 'whsec_' + base64 of 24-64 bytes
#   (the scheme is in the body, or stored);
# - integrations_search_retrieve, search_create: at most 20 entities, each a name of 1-64 letters, digits or
#   _ . - [ ] (comma-separated in the query string), and custom_filters keys are parameter names (OpenAPI 3.0
#   cannot state a pattern of an object's keys);
# - integrations_widgets_data_retrieve: the entity, its fields and its filters are those the provider declares.
[[operations]]
include-operation-id = [
    "admin_providers_test_create", "admin_providers_create", "admin_providers_partial_update", "api_keys_create",
    "integrations_create", "integrations_update", "integrations_partial_update",
    "integrations_connect_oauth_create", "me_integrations_connect_oauth_create",
    "integrations_credentials_update", "integrations_credentials_partial_update",
    "integrations_search_retrieve", "search_create", "integrations_widgets_data_retrieve",
    "integrations_usage_retrieve", "oauth_callback_retrieve",
    "webhooks_create", "webhooks_rotate_secret_create",
]
checks.positive_data_acceptance.expected-statuses = {VALID_BUT_REFUSED}

# Readiness answers 503, as documented, when a component is slow or down.
[[operations]]
include-operation-id = "readyz"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
""")
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)

# A deeper, random hunt: API_FUZZ_EXAMPLES=100 pytest tests/integrations_site/test_schemathesis.py
FUZZ_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "0"))
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def bearer(user, tenant=None) -> str:
    """What tests.conftest.token_client sends: a real JWT, with the tenant claim when scoped."""
    refresh = RefreshToken.for_user(user)
    if tenant is not None:
        refresh[TENANT_CLAIM] = str(tenant.pk)
    return f"Bearer {refresh.access_token}"


@pytest.fixture
def loopback_only(monkeypatch):
    """Resolve loopback names only, so no generated URL can send traffic off this machine."""
    real_getaddrinfo = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.strip("[]") not in LOOPBACK_NAMES and not name.startswith("127."):
            raise socket.gaierror(socket.EAI_NONAME, f"{name} is not resolved in this test")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture
def wsgi_in_test_transaction(db):
    """Serve requests inside the test's transaction, as Django's test client does.

    The WSGI handler closes "old" connections around each request; inside the
    test's atomic block that would mark it for rollback, so the signal is
    detached for the test (django.test.Client detaches it the same way).
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def far_side(httpserver):
    """The provider API the fixture integration talks to, on loopback."""
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    httpserver.expect_request("/status").respond_with_json({"items": [{"id": "ord-1", "status": "active"}]})
    return httpserver.url_for("/").rstrip("/")


@pytest.fixture
def api_world(wsgi_in_test_transaction, loopback_only, far_side, settings):
    """A tenant with its admin, a catalog provider, an integration with credentials and two versions, an API key."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    platform = Actor(user=root)
    tenant = tenant_create(actor=platform, data={"name": "Acme", "slug": "acme", "plan": "pro"})
    admin = UserFactory(username="acme-admin")
    MembershipFactory(user=admin, tenant=tenant, role=Role.TENANT_ADMIN.value)
    actor = Actor(user=admin)
    provider = provider_create(
        actor=platform,
        data={"slug": "generic-rest", "name": "Generic REST", "auth_type": "none",
              "default_api_base_url": far_side, "default_test_endpoint": "/ping"},
    )
    integration = connection_services.integration_create(
        actor=actor, tenant=tenant, provider=provider, data={"name": "Main API"}
    )
    integration = connection_services.integration_update(
        actor=actor, integration=integration, data={"status_endpoint": "/status"}
    )
    connection_services.credential_set(
        actor=actor, integration=integration, credential_type="bearer", data={"token": "tok_live_0123456789abcdef"}
    )
    api_key, _ = api_key_create(actor=actor, tenant=tenant, name="ci", role=Role.TENANT_ADMIN.value)
    event = AuditEvent.objects.filter(tenant=tenant).order_by("created_at").first()
    return {
        "tenant_auth": bearer(admin, tenant),
        "admin_auth": bearer(root),
        "ids": {
            "integration": str(integration.pk),
            "version": "1",  # the path parameter is a string of digits
            "provider": provider.slug,
            "tenant": str(tenant.pk),
            "api_key": str(api_key.pk),
            "audit_event": str(event.pk),
        },
    }


def real_path_parameters(path: str, ids: dict) -> dict:
    """Ids of the fixture's rows for the path parameters of ``path``."""
    if path.startswith("/api/v1/integrations/"):
        return {"id": ids["integration"], "integration_pk": ids["integration"], "number": ids["version"]}
    if path.startswith(("/api/v1/admin/providers/", "/api/v1/catalog/")):
        return {"slug": ids["provider"]}
    if path.startswith("/api/v1/admin/tenants/"):
        return {"id": ids["tenant"]}
    if path.startswith("/api/v1/api-keys/"):
        return {"id": ids["api_key"]}
    if path.startswith(("/api/v1/audit-events/", "/api/v1/admin/audit-events/")):
        return {"id": ids["audit_event"]}
    return {}


def auth_is_negated(case) -> bool:
    return case.meta is not None and any(
        case.meta.is_negative_at(location) for location in (ParameterLocation.HEADER, ParameterLocation.COOKIE)
    )


def path_is_positive(case) -> bool:
    """Swap ids only into valid paths: a deliberately invalid path must stay invalid.

    A negative case that does not say where it is negative is left alone as well.
    """
    if case.meta is None:
        return True
    component = case.meta.components.get(ParameterLocation.PATH)
    if component is None:
        return case.meta.generation.mode == GenerationMode.POSITIVE
    return component.mode == GenerationMode.POSITIVE


@schema.given(use_real_ids=st.booleans())
@schema.parametrize()
@hypothesis_settings(
    max_examples=FUZZ_EXAMPLES or 8,
    deadline=None,
    derandomize=not FUZZ_EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_api_answers_as_documented(case, use_real_ids, api_world):
    # The only header and cookie parameters are the security schemes' (JWT, API key, session), and every
    # request carries this test's own valid JWT: a case made invalid there never reaches the API as such.
    assume(not auth_is_negated(case))
    if use_real_ids and case.path_parameters and path_is_positive(case):
        real = real_path_parameters(case.operation.path, api_world["ids"])
        case.path_parameters = {name: real.get(name, value) for name, value in case.path_parameters.items()}
    is_admin_path = case.operation.path.startswith("/api/v1/admin/")
    auth = api_world["admin_auth"] if is_admin_path else api_world["tenant_auth"]
    case.call_and_validate(headers={"Authorization": auth})
