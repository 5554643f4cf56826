"""Demo data (local demo only): the provider catalog, a demo tenant with users and an API key, and demo
integrations that talk to the demo upstream (``python manage.py run_demo_upstream``, started by scripts/run.sh).

The demo integrations, each pointing at ``DEMO_UPSTREAM_URL``:

- "Demo inventory API": an API key; polls a status list that changes every few seconds;
- "Demo payments": a bearer token; status updates arrive as signed webhook deliveries
  at its webhook endpoint (the upstream's sender posts them);
- "Demo shipping": HTTP Basic; its delivery slots' statuses arrive over an event stream
  (update method ``sse``, ``/shipping/stream``), held by ``manage.py run_streams``;
- "Demo CRM": the OAuth demo provider, connected by a tenant admin through
  ``POST /api/v1/integrations/{id}/connect/oauth`` and a browser.

Idempotent: rows that exist are left alone, so a second run creates nothing; a
demo integration that points somewhere else (the api.example.com placeholder of
older runs, another upstream port) is pointed at the upstream again, and one
seeded before search or event streams existed gets them once. Everything
is written through the services, audited as ``system``. ``--catalog-only``
writes the real-world provider catalog and nothing else, as ``seed_catalog`` (the
production one-shot) does.

Environment: ``DEMO_PASSWORD``, ``DEMO_UPSTREAM_URL`` (default
http://127.0.0.1:8001), ``DEMO_HUB_URL`` (default http://127.0.0.1:8000: the
OAuth return URL's host is allowed for the demo tenant).
"""
import os
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.services import SYSTEM
from catalog.management.commands.seed_catalog import CANONICAL_STATUS_MAPPING, PROVIDERS, providers_seed
from catalog.models import IntegrationProvider
from catalog.services import provider_update
from connections.models import Integration
from connections.selectors import credential_of
from connections.services import credential_set, integration_create, integration_update
from demo import upstream as demo
from tenants.choices import Plan, Role
from tenants.models import ApiKey, Membership, Tenant
from tenants.services import api_key_create, membership_set, tenant_create, tenant_update
from webhooks.models import WebhookEndpoint
from webhooks.services import endpoint_create

DEFAULT_PASSWORD = "demo-pass-123"
DEFAULT_UPSTREAM_URL = "http://127.0.0.1:8001"
DEFAULT_HUB_URL = "http://127.0.0.1:8000"
DEMO_TENANT = {"slug": "demo", "name": "Demo Company", "plan": Plan.PRO}
DEMO_USERS = (
    ("demo-admin", Role.TENANT_ADMIN),
    ("demo-manager", Role.INTEGRATION_MANAGER),
    ("demo-member", Role.MEMBER),
)
DEMO_INTEGRATION = "Demo inventory API"
DEMO_KEY_NAME = "Demo key"
DEMO_ENDPOINT_NAME = "Demo payments events"
DEMO_STREAM_ENDPOINT = "/shipping/stream"

def demo_providers(upstream: str) -> list[dict]:
    """Catalog entries of the demo upstream's services (local demo only, never in --catalog-only)."""
    return [
        {
            "slug": demo.PAYMENTS_PROVIDER, "name": "Demo Payments", "category": "payment_gateway",
            "auth_type": "bearer",
            "description": "The demo upstream's payments API: a bearer token, and signed status updates "
                           "delivered as webhooks every few seconds.",
            "capabilities": ["payments", "webhooks"], "supported_sync_directions": ["inbound"],
            "supports_webhooks": True, "available_entities": ["charges"],
            **demo_search("/payments/search", ["charges"], {"charges": {
                "endpoint": "/payments/charges", "items_path": "data", "total_path": "total",
                "fields": ["id", "name", "status", "updated_at"], "filter_params": ["status"]}}),
            "default_api_base_url": upstream, "default_test_endpoint": "/payments/ping",
            "default_status_mapping": CANONICAL_STATUS_MAPPING,
            "default_webhook_signature_scheme": "standard_webhooks", "icon": "mdi:credit-card", "color": "#059669",
        },
        {
            "slug": "demo-shipping", "name": "Demo Shipping", "category": "data_source", "auth_type": "basic",
            "description": "The demo upstream's shipments API, behind HTTP Basic.",
            "capabilities": ["shipments"], "supported_sync_directions": ["inbound"],
            "available_entities": ["shipments"],
            **demo_search("/shipping/search", ["shipments"], {"shipments": {
                "endpoint": "/shipping/shipments", "items_path": "results",
                "fields": ["id", "carrier", "status"], "filter_params": []}}),
            "default_api_base_url": upstream, "default_test_endpoint": "/shipping/ping",
            "icon": "mdi:truck", "color": "#D97706",
        },
        {
            "slug": "demo-crm", "name": "Demo CRM", "category": "crm", "auth_type": "oauth2",
            "description": "The demo upstream's CRM, connected with OAuth 2.0 (authorization code with PKCE, "
                           "rotating refresh tokens) through its own authorization server.",
            "capabilities": ["contacts"], "supported_sync_directions": ["inbound"], "supports_oauth": True,
            "available_entities": ["contacts"],
            **demo_search("/crm/search", ["contacts"], {"contacts": {
                "endpoint": "/crm/contacts", "items_path": "results", "total_path": "total",
                "fields": ["id", "name", "company"], "filter_params": []}}),
            "oauth_config": demo_oauth_config(upstream),
            "default_api_base_url": upstream, "default_test_endpoint": "/crm/me",
            "icon": "mdi:account-group", "color": "#7C3AED",
        },
    ]


def demo_search(endpoint: str, entities: list[str], entity_config: dict) -> dict:
    """A demo provider's search (the hub's default field names, which the upstream answers in) and widget data."""
    return {"supports_search": True, "searchable_entities": entities, "search_config": {"endpoint": endpoint},
            "entity_config": entity_config}


SEARCH_KEYS = ("supports_search", "searchable_entities", "search_config", "entity_config")


def demo_oauth_config(upstream: str) -> dict:
    return {
        "authorize_url": f"{upstream}/oauth/authorize",
        "token_url": f"{upstream}/oauth/token",
        "revoke_url": f"{upstream}/oauth/revoke",
        "client_id": demo.CLIENT_ID,
        "client_secret": demo.CLIENT_SECRET,  # write-only: stored encrypted, apart from the config
        "scopes": list(demo.SCOPES),
        "pkce": True,
        "token_auth_method": demo.TOKEN_AUTH_METHOD,
    }


def demo_integrations(upstream: str) -> list[dict]:
    """The demo tenant's integrations: provider, config and the credential the upstream accepts."""
    return [
        {
            "provider": "generic-rest", "credential": ("api_key", {"api_key": demo.INVENTORY_API_KEY,
                                                                   "header_name": demo.INVENTORY_KEY_HEADER}),
            "data": {"name": DEMO_INTEGRATION, "description": "Stock levels from the demo upstream, polled.",
                     "environment": "sandbox", "api_base_url": upstream, "test_endpoint": "/inventory/ping",
                     "status_endpoint": "/inventory/items", "update_method": "polling",
                     "polling_interval_seconds": 10, "status_mapping": CANONICAL_STATUS_MAPPING},
        },
        {
            "provider": demo.PAYMENTS_PROVIDER, "credential": ("bearer", {"token": demo.PAYMENTS_TOKEN}),
            "data": {"name": "Demo payments", "description": "Payment statuses, delivered by signed webhooks.",
                     "environment": "sandbox", "api_base_url": upstream, "test_endpoint": "/payments/ping",
                     "update_method": "webhook", "status_mapping": CANONICAL_STATUS_MAPPING, "search_enabled": True},
        },
        {
            "provider": "demo-shipping", "credential": ("basic", {"username": demo.SHIPPING_USERNAME,
                                                                 "password": demo.SHIPPING_PASSWORD}),
            "data": {"name": "Demo shipping",
                     "description": "Shipments (HTTP Basic); delivery slot statuses streamed as server-sent events.",
                     "environment": "sandbox", "api_base_url": upstream, "test_endpoint": "/shipping/ping",
                     "update_method": "sse", "stream_endpoint": DEMO_STREAM_ENDPOINT,
                     "status_mapping": CANONICAL_STATUS_MAPPING, "search_enabled": True},
        },
        {
            "provider": "demo-crm", "credential": None,
            "data": {"name": "Demo CRM", "description": "Connect it with OAuth: POST …/connect/oauth, then a browser.",
                     "environment": "sandbox", "api_base_url": upstream, "test_endpoint": "/crm/me",
                     "search_enabled": True},
        },
    ]


def _base_url(name: str, default: str) -> str:
    url = (os.environ.get(name) or default).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"{name} must be an http(s) URL, not {url!r}.")
    return url


def return_hosts(hub_url: str) -> list[str]:
    """What the demo tenant's allowed_return_hosts needs for return URLs on the hub (loopback both ways)."""
    parts = urlsplit(hub_url)
    port = f":{parts.port}" if parts.port else ""
    hosts = [f"{parts.hostname}{port}"]
    if parts.hostname in ("127.0.0.1", "localhost"):
        hosts = [f"127.0.0.1{port}", f"localhost{port}"]
    return hosts


def _missing_features(integration: Integration, data: dict) -> dict:
    """What a demo integration seeded before search or event streams existed lacks of ``data``.

    Given once: an integration that has them keeps what a person set since (another update method,
    another mapping)."""
    missing = {}
    if data.get("search_enabled") and not integration.search_enabled:
        missing["search_enabled"] = True
    if data.get("stream_endpoint") and not integration.stream_endpoint:
        missing.update(update_method=data["update_method"], stream_endpoint=data["stream_endpoint"])
        if not integration.status_mapping:
            missing["status_mapping"] = data["status_mapping"]
    return missing


class Command(BaseCommand):
    help = ("Create demo data (idempotent): a provider catalog, a demo tenant with users and an API key, "
            "and demo integrations that talk to the demo upstream.")

    def add_arguments(self, parser):
        parser.add_argument("--catalog-only", action="store_true",
                            help="Create the real-world provider catalog only, as seed_catalog does: no demo "
                                 "providers, tenant, users, keys or integrations.")

    def handle(self, *args, **options):
        if options["catalog_only"]:
            call_command("seed_catalog", stdout=self.stdout, stderr=self.stderr)
            return
        password = os.environ.get("DEMO_PASSWORD") or DEFAULT_PASSWORD
        upstream = _base_url("DEMO_UPSTREAM_URL", DEFAULT_UPSTREAM_URL)
        hub = _base_url("DEMO_HUB_URL", DEFAULT_HUB_URL)
        with transaction.atomic():
            created = providers_seed(PROVIDERS) + providers_seed(demo_providers(upstream))
            self._repoint_providers(upstream)
            tenant = self._tenant(hub)
            self._users(tenant, password)
            integrations = [self._integration(tenant, spec, upstream) for spec in demo_integrations(upstream)]
            endpoint = self._webhook_endpoint(tenant, integrations[1])
            raw_key = self._api_key(tenant)
        self._report(created, tenant, password, raw_key)
        self._report_demo(upstream, hub, integrations, endpoint)

    # --- catalog ----------------------------------------------------------------------------------------

    def _repoint_providers(self, upstream: str) -> None:
        """Demo providers seeded for another upstream address (or client secret) follow the current one."""
        for data in demo_providers(upstream):
            provider = IntegrationProvider.objects.get(slug=data["slug"])
            changes = {}
            if provider.default_api_base_url != upstream:
                changes["default_api_base_url"] = upstream
            changes.update({key: data[key] for key in SEARCH_KEYS
                            if key in data and getattr(provider, key) != data[key]})
            wanted = data.get("oauth_config")
            if wanted and (provider.oauth_config != {k: v for k, v in wanted.items() if k != "client_secret"}
                           or provider.oauth_client_secret != wanted["client_secret"]):
                changes["oauth_config"] = wanted
            if changes:
                provider_update(actor=SYSTEM, provider=provider, data=changes)

    # --- tenant, users, key --------------------------------------------------------------------------------

    def _tenant(self, hub: str) -> Tenant:
        tenant = Tenant.objects.filter(slug=DEMO_TENANT["slug"]).first()
        if tenant is None:
            return tenant_create(actor=SYSTEM, data={**DEMO_TENANT, "allowed_return_hosts": return_hosts(hub)})
        hosts = list(tenant.allowed_return_hosts or [])
        missing = [h for h in return_hosts(hub) if h not in hosts]
        if missing:
            tenant = tenant_update(actor=SYSTEM, tenant=tenant, data={"allowed_return_hosts": hosts + missing})
        return tenant

    def _users(self, tenant: Tenant, password: str) -> None:
        User = get_user_model()
        for username, role in DEMO_USERS:
            user = self._user(User, username, password)
            if not Membership.objects.filter(user=user, tenant=tenant).exists():
                membership_set(actor=SYSTEM, tenant=tenant, user=user, role=role)
        admin = self._user(User, "admin", password)
        if not (admin.is_staff and admin.is_superuser):
            admin.is_staff = admin.is_superuser = True
            admin.save(update_fields=["is_staff", "is_superuser"])

    @staticmethod
    def _user(User, username: str, password: str):
        user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        # Keep the printed password true even when DEMO_PASSWORD changed since the last run.
        if created or not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

    def _api_key(self, tenant: Tenant) -> str | None:
        usable = [k for k in ApiKey.objects.for_tenant(tenant).filter(name=DEMO_KEY_NAME) if k.is_usable]
        if usable:
            return None
        _, raw = api_key_create(actor=SYSTEM, tenant=tenant, name=DEMO_KEY_NAME, role=Role.TENANT_ADMIN)
        return raw

    # --- integrations --------------------------------------------------------------------------------------------

    def _integration(self, tenant: Tenant, spec: dict, upstream: str) -> Integration:
        """Create the integration, or point an existing one at the upstream; then its credential."""
        data = spec["data"]
        integration = Integration.objects.for_tenant(tenant).live().filter(name=data["name"]).first()
        if integration is None:
            provider = IntegrationProvider.objects.get(slug=spec["provider"])
            integration = integration_create(actor=SYSTEM, tenant=tenant, provider=provider, data=data)
        elif integration.api_base_url.rstrip("/") != upstream:
            integration = integration_update(actor=SYSTEM, integration=integration, data=data)
        elif missing := _missing_features(integration, data):
            integration = integration_update(actor=SYSTEM, integration=integration, data=missing)
        if spec["credential"] is not None:
            credential = credential_of(integration)
            if credential is None or not credential.is_set:
                kind, fields = spec["credential"]
                credential_set(actor=SYSTEM, integration=integration, credential_type=kind, data=dict(fields))
        return integration

    def _webhook_endpoint(self, tenant: Tenant, integration: Integration) -> WebhookEndpoint:
        endpoint = (WebhookEndpoint.objects.for_tenant(tenant).live()
                    .filter(integration=integration, name=DEMO_ENDPOINT_NAME).first())
        if endpoint is None:
            endpoint, _ = endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration, data={
                "name": DEMO_ENDPOINT_NAME, "signature_scheme": "standard_webhooks",
                "description": "Status updates signed and sent by the demo upstream's sender.",
            })
        return endpoint

    # --- output ---------------------------------------------------------------------------------------------------

    def _report(self, created: int, tenant: Tenant, password: str, raw_key: str | None) -> None:
        out, style = self.stdout, self.style
        out.write(style.SUCCESS(f"Demo data ready ({created} new provider(s); catalog has "
                                f"{IntegrationProvider.objects.count()})."))
        out.write("")
        out.write(style.MIGRATE_HEADING("Logins"))
        out.write("  Admin site:  /admin/     user: admin (staff superuser)")
        out.write("  API docs:    /api/docs/  token: POST /api/v1/auth/token/ "
                  f'{{"username", "password", "tenant": "{tenant.slug}"}}')
        out.write(f"  Tenant slug: {tenant.slug}")
        for username, role in DEMO_USERS:
            out.write(f"  {username:<14} role {role}")
        out.write(f"  Password for all of them: {password}")
        out.write("")
        if raw_key:
            out.write(style.MIGRATE_HEADING("API key (tenant_admin) - shown once, copy it now"))
            out.write(f"  {raw_key}")
            out.write("  Use it as 'Authorization: Api-Key <key>' or 'X-API-Key: <key>'.")
        else:
            out.write(f"A demo API key already exists for tenant '{tenant.slug}'; its full value is only shown "
                      "when it is created.")
            out.write("  New key: POST /api/v1/api-keys/ as demo-admin, or Admin > API keys > Add.")

    def _report_demo(self, upstream: str, hub: str, integrations: list, endpoint: WebhookEndpoint) -> None:
        out, style = self.stdout, self.style
        inventory, payments, shipping, crm = integrations
        out.write("")
        out.write(style.MIGRATE_HEADING(f"Demo upstream: {upstream}/  (python manage.py run_demo_upstream)"))
        out.write(f"  {inventory.name:<20} api_key, statuses polled every {inventory.polling_interval_seconds}s"
                  f"  {inventory.pk}")
        out.write(f"  {payments.name:<20} bearer, webhooks at {endpoint.url_path}  {payments.pk}")
        out.write(f"  {shipping.name:<20} basic, slot statuses streamed from {shipping.stream_endpoint} "
                  f"(manage.py run_streams)  {shipping.pk}")
        out.write(f"  {crm.name:<20} oauth2, connect it:  {crm.pk}")
        out.write(f"    POST {hub}/api/v1/integrations/{crm.pk}/connect/oauth "
                  f'{{"return_url": "{hub}/"}}  (as demo-admin)')
        out.write("    then open the answer's authorization_url in a browser and press Allow.")
        out.write(f"  Search them all: POST {hub}/api/v1/search {{\"query\": \"order\"}}  (payments, shipping, and the "
                  "CRM once connected)")
        out.write(f"  Widget data: GET {hub}/api/v1/integrations/{payments.pk}/widgets/data?entity=charges")
