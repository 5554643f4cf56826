"""Shared fixtures.

Every test runs with a suite-wide guard: each plaintext that goes through
Fernet encryption is remembered, and every response from the Django or DRF
test clients is checked for it. A secret in any API body or admin page fails
the test that produced it.
"""
import json
import logging

import pytest
from django.db.models import QuerySet
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from audit.models import AuditEvent
from connections.services import usage
from integrations_site import bulk, crypto, queueing
from tenants.authentication import TENANT_CLAIM
from tenants.choices import SUPER_ADMIN, Role
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from tests.tenants.factories import MembershipFactory, TenantFactory, UserFactory


@pytest.fixture(scope="session", autouse=True)
def copies_listeners_stopped(django_db_setup):
    """The test database is dropped at the end of the run: the listener of the integrations' copies
    (a PostgreSQL connection of its own, connections.selectors) is stopped first."""
    yield
    from connections.selectors import INTEGRATION_COPIES

    INTEGRATION_COPIES.stop()


def pytest_collection_modifyitems(config, items):
    """The embedded pass (SQLite) leaves out the tests of a database server's own behaviour; the
    postgres pass leaves out those that run the embedded default themselves (they would run it
    twice alike). The summary names each; every other test runs in both passes."""
    from django.conf import settings

    embedded = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    marker, reason = (("database_server", "needs a database server") if embedded
                      else ("embedded_default", "runs the embedded default, in the embedded pass"))
    kept, left = [], []
    for item in items:
        (left if item.get_closest_marker(marker) else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept
        config._ih_left_out = [(item.nodeid, reason) for item in left]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for nodeid, reason in getattr(config, "_ih_left_out", []):
        terminalreporter.write_line(f"left out of this pass ({reason}): {nodeid}")
    if getattr(config, "_ih_screenshots", None):
        terminalreporter.write_line(f"admin screenshots: {config._ih_screenshots}")


ROLES = (SUPER_ADMIN, Role.TENANT_ADMIN.value, Role.INTEGRATION_MANAGER.value, Role.MEMBER.value)
MIN_SECRET_LENGTH = 6

STORED_SECRETS: set[str] = set()


def _remember(plaintext: str) -> None:
    try:
        value = json.loads(plaintext)
    except ValueError:
        value = plaintext
    values = value.values() if isinstance(value, dict) else [value]
    for item in values:
        if isinstance(item, str) and len(item) >= MIN_SECRET_LENGTH:
            STORED_SECRETS.add(item)


@pytest.fixture(autouse=True)
def secret_guard(monkeypatch):
    """Remember every encrypted plaintext; fail on any response that shows one."""
    STORED_SECRETS.clear()
    usage.batcher.take()  # counts left by an earlier test belong to rows that are gone
    original_encrypt = crypto.encrypt_str

    def recording_encrypt(value: str) -> str:
        _remember(value)
        return original_encrypt(value)

    monkeypatch.setattr(crypto, "encrypt_str", recording_encrypt)

    def checked(method):
        def wrapper(self, *args, **kwargs):
            known_before = set(STORED_SECRETS)
            response = method(self, *args, **kwargs)
            body = b"".join(response.streaming_content) if getattr(response, "streaming", False) else response.content
            text = body.decode("utf-8", errors="replace")
            # A secret may be shown once, by the uncacheable answer of the request that created it
            # (webhook endpoint create, secret rotation); never again, and never by another answer.
            shown_once = "no-store" in response.get("Cache-Control", "")
            watched = known_before if shown_once else STORED_SECRETS
            leaked = [s for s in watched if s in text]
            assert not leaked, f"a stored secret appeared in the response to {args[:1]}"
            return response

        return wrapper

    monkeypatch.setattr(Client, "request", checked(Client.request))
    monkeypatch.setattr(APIClient, "request", checked(APIClient.request))

    # Audit rows: checked as they are written (one by one or in bulk).
    original_save, original_bulk = AuditEvent.save, QuerySet.bulk_create

    def leaked_into(event) -> list[str]:
        text = json.dumps(
            [event.changes, event.target_repr, event.actor], default=str, ensure_ascii=False
        )
        return [s for s in STORED_SECRETS if s in text]

    def checked_save(self, *args, **kwargs):
        assert not leaked_into(self), f"a stored secret went into the audit event {self.action}"
        return original_save(self, *args, **kwargs)

    def checked_bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        if self.model is AuditEvent:
            for event in objs:
                assert not leaked_into(event), f"a stored secret went into the audit event {event.action}"
        return original_bulk(self, objs, *args, **kwargs)

    original_insert = bulk.insert

    def checked_insert(objs):
        objs = list(objs)
        for event in objs:
            if isinstance(event, AuditEvent):
                assert not leaked_into(event), f"a stored secret went into the audit event {event.action}"
        return original_insert(objs)

    monkeypatch.setattr(AuditEvent, "save", checked_save)
    monkeypatch.setattr(QuerySet, "bulk_create", checked_bulk_create)
    monkeypatch.setattr(bulk, "insert", checked_insert)

    # Log lines at every level: a handler sees each record; other handlers keep their levels.
    guard = _SecretLogGuard()
    root = logging.getLogger()
    old_level, old_handler_levels = root.level, {h: h.level for h in root.handlers}
    for handler in root.handlers:
        handler.setLevel(max(handler.level, logging.WARNING))
    root.setLevel(logging.DEBUG)
    root.addHandler(guard)
    try:
        yield
    finally:
        root.removeHandler(guard)
        root.setLevel(old_level)
        for handler, level in old_handler_levels.items():
            handler.setLevel(level)
    assert not guard.leaks, f"a stored secret appeared in log lines: {guard.leaks[:3]}"


class _SecretLogGuard(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record):
        try:
            text = record.getMessage()
        except Exception:
            return
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        for secret in STORED_SECRETS:
            if secret in text:
                self.leaks.append(f"{record.name}: {record.levelname}")


class SentTasks(dict):
    """Tasks sent through ``integrations_site.queueing``, recorded instead of sent to a broker.

    ``sent_tasks[name]`` is the live list of what was sent under that task name: the argument of a
    one-argument task (ids, a check id), else the tuple of arguments. ``broker_down = True`` makes
    sending fail as an unreachable broker does; ``on_send(name, args)`` runs as each task is sent.
    """

    broker_down = False
    on_send = None

    def __missing__(self, name):
        self[name] = []
        return self[name]

    def record(self, name: str, args: list, countdown) -> None:
        if self.broker_down:
            from kombu.exceptions import OperationalError

            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        if self.on_send is not None:
            self.on_send(name, args)
        self[name].append(args[0] if len(args) == 1 else tuple(args))


@pytest.fixture
def sent_tasks(monkeypatch):
    sent = SentTasks()
    monkeypatch.setattr(queueing, "_send", sent.record)
    return sent


@pytest.fixture
def tenant(db):
    return TenantFactory(name="Acme", slug="acme", plan="pro")


@pytest.fixture
def other_tenant(db):
    return TenantFactory(name="Globex", slug="globex", plan="pro")


@pytest.fixture
def provider(db):
    return ProviderFactory(slug="generic-rest", name="Generic REST", auth_type="none")


@pytest.fixture
def integration(tenant, provider):
    return IntegrationFactory(tenant=tenant, provider=provider, name="Main API")


def make_user(role: str, tenant=None, username: str | None = None):
    """A user holding ``role`` in ``tenant`` (super_admin: a superuser)."""
    if role == SUPER_ADMIN:
        return UserFactory(username=username or "root", is_superuser=True, is_staff=True)
    user = UserFactory(username=username or f"{role}-{tenant.slug}")
    MembershipFactory(user=user, tenant=tenant, role=role)
    return user


def token_client(user, tenant=None) -> APIClient:
    """An APIClient authenticated through the real JWT path."""
    refresh = RefreshToken.for_user(user)
    if tenant is not None:
        refresh[TENANT_CLAIM] = str(tenant.pk)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {refresh.access_token}")
    return client


@pytest.fixture
def client_for(db, tenant, other_tenant):
    """``client_for(role)``: roles, plus 'anonymous' and 'other_tenant' (an admin of another tenant).

    super_admin gets a platform-wide token; ``client_for('super_admin', scoped=True)`` one for ``tenant``.
    """
    cache = {}

    def build(role: str, scoped: bool = False) -> APIClient:
        key = (role, scoped)
        if key in cache:
            return cache[key]
        if role == "anonymous":
            client = APIClient()
        elif role == "other_tenant":
            client = token_client(make_user(Role.TENANT_ADMIN, other_tenant, "other-admin"), other_tenant)
        elif role == SUPER_ADMIN:
            client = token_client(make_user(SUPER_ADMIN), tenant if scoped else None)
        else:
            client = token_client(make_user(role, tenant), tenant)
        cache[key] = client
        return client

    return build


@pytest.fixture
def admin_client_api(client_for):
    return client_for(Role.TENANT_ADMIN.value)
