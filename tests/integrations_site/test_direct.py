"""The integration's detail read with an API key, answered without DRF's request cycle (api/direct.py).

Every answer here is compared with the one DRF's view gives to the same request (the direct read taken
out of the route for it): the same status, bytes and headers, with the same request id sent to both. The
rate count must advance by one per request whichever of the two answered, and every request the direct
read does not take (another method, a query, a token, a refusal, an object that is not there) must be the
view's own answer. Runs on both databases and both caches (Redis in the PostgreSQL pass, the shared file
cache on the embedded default), where the rate count is made in the key's lookup or after it.
"""
import contextlib
import uuid
from datetime import timedelta

import pytest
from django.urls import get_resolver
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient

from audit.services import SYSTEM
from connections.api import views
from integrations_site.api.direct import direct_read
from tenants.authentication import ApiKeyAuthentication
from tenants.choices import Role
from tenants.models import ApiKey
from tenants.services import api_key_create
from tests.connections.factories import IntegrationFactory

from .test_throttles import assert_headers, assert_throttled, fresh_window

REQUEST_ID = "direct-read-test"


def _pattern(patterns=None):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if getattr(pattern, "name", None) == "integration-detail":
            return pattern
        found = _pattern(pattern.url_patterns) if hasattr(pattern, "url_patterns") else None
        if found is not None:
            return found
    return None


@contextlib.contextmanager
def drf_only():
    """The route answered by DRF's view alone, as it was before the direct read."""
    pattern = _pattern()
    direct = pattern.callback
    pattern.callback = direct.__wrapped__
    try:
        yield
    finally:
        pattern.callback = direct


@pytest.fixture
def limit(settings):
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "integrations": "5/min"}
    fresh_window()
    return 5


def key_client(tenant, role=Role.MEMBER.value, header="X-API-Key", **key):
    api_key, raw = api_key_create(actor=SYSTEM, tenant=tenant, name=f"key-{uuid.uuid4().hex[:6]}", role=role)
    if key:
        ApiKey.objects.filter(pk=api_key.pk).update(**key)
    client = APIClient()
    if header == "X-API-Key":
        client.credentials(HTTP_X_API_KEY=raw, HTTP_X_REQUEST_ID=REQUEST_ID)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}", HTTP_X_REQUEST_ID=REQUEST_ID)
    return client


def headers(response, *, remaining_off_by: int = 0) -> dict:
    """The answer's headers, the rate limit's Remaining moved by ``remaining_off_by`` (a later request)."""
    found = dict(response.items())
    if "X-RateLimit-Remaining" in found:
        found["X-RateLimit-Remaining"] = str(int(found["X-RateLimit-Remaining"]) + remaining_off_by)
    return found


def same_answer(direct, drf) -> None:
    """``drf`` answered one request after ``direct`` (one more counted), by the view."""
    assert isinstance(drf, Response)
    assert direct.status_code == drf.status_code
    assert direct.content == drf.content
    assert headers(direct) == headers(drf, remaining_off_by=1)


def url(integration) -> str:
    return f"/api/v1/integrations/{integration.pk}/"


# --- the direct answer is DRF's answer ------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_the_direct_answer_is_the_views_answer(tenant, integration, limit, header, accept):
    client = key_client(tenant, header=header)
    extra = {} if accept is None else {"HTTP_ACCEPT": accept}
    client.get(url(integration), **extra)  # the key's first request reads its row: both below use the cache
    direct = client.get(url(integration), **extra)
    with drf_only():
        drf = client.get(url(integration), **extra)
    assert direct.status_code == 200
    assert not isinstance(direct, Response)  # answered without DRF's view
    same_answer(direct, drf)
    assert direct["Content-Type"] == "application/json"
    assert direct["Allow"] == "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"
    assert direct["X-Request-ID"] == REQUEST_ID
    assert_headers(direct, limit=limit, remaining=limit - 2)
    assert direct.json()["id"] == str(integration.pk)


def test_an_integration_with_credentials_json_and_times_reads_the_same(tenant, provider, limit):
    from connections.services import credential_set

    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Ünïcode \u2028 name",
                                     status_mapping={"up": "operational", "nested ünï": "degraded"},
                                     last_error={"code": "TIMEOUT", "numbers": [1, 2.5, None]},
                                     health_checked_at=timezone.now())
    credential_set(actor=SYSTEM, integration=integration, credential_type="bearer", data={"token": "s3cr3t-value"})
    client = key_client(tenant, role=Role.TENANT_ADMIN.value)
    direct = client.get(url(integration))
    with drf_only():
        drf = client.get(url(integration))
    assert not isinstance(direct, Response)
    same_answer(direct, drf)
    assert b"s3cr3t-value" not in direct.content
    assert direct.json()["credential"] is not None


def test_a_request_is_counted_once_whichever_answers_it(tenant, integration, limit):
    client = key_client(tenant)
    for n in range(limit):
        response = client.get(url(integration))
        assert response.status_code == 200
        assert_headers(response, limit=limit, remaining=limit - n - 1)
    refused = client.get(url(integration))  # the direct read leaves a refusal to the view
    assert isinstance(refused, Response)
    assert_throttled(refused, limit=limit)


def test_a_request_the_key_last_used_long_ago_updates_its_last_use(tenant, integration, limit):
    long_ago = timezone.now() - timedelta(days=2)
    client = key_client(tenant, last_used_at=long_ago)
    assert client.get(url(integration)).status_code == 200
    assert ApiKey.objects.get(name__startswith="key-").last_used_at > long_ago


# --- every other request is the view's ------------------------------------------------------------------------


def _refusals(tenant, other_tenant):
    yesterday = timezone.now() - timedelta(days=1)
    return {
        "revoked": (key_client(tenant, revoked_at=yesterday), 401),
        "expired": (key_client(tenant, expires_at=yesterday), 401),
        "another tenant's key": (key_client(other_tenant), 404),
    }


def test_refusals_are_the_views_answers_counted_once(tenant, other_tenant, integration, limit):
    for name, (client, status) in _refusals(tenant, other_tenant).items():
        direct = client.get(url(integration))
        with drf_only():
            drf = client.get(url(integration))
        assert isinstance(direct, Response), name
        assert direct.status_code == status, (name, direct.content)
        assert direct.json()["error"]["code"] == drf.json()["error"]["code"]
        assert direct.json()["error"]["request_id"] == REQUEST_ID
        assert {k: v for k, v in direct.items() if k != "X-RateLimit-Remaining"} == {
            k: v for k, v in drf.items() if k != "X-RateLimit-Remaining"}, name
        if status == 404:  # authenticated: counted, once per request
            assert_headers(direct, limit=limit, remaining=limit - 1)
            assert_headers(drf, limit=limit, remaining=limit - 2)


def test_an_invalid_key_and_an_inactive_tenant_are_the_views_401(tenant, integration, limit):
    bad = APIClient()
    bad.credentials(HTTP_X_API_KEY="ihk_nothere_nothing", HTTP_X_REQUEST_ID=REQUEST_ID)
    malformed = APIClient()
    malformed.credentials(HTTP_AUTHORIZATION="Api-Key not-a-key", HTTP_X_REQUEST_ID=REQUEST_ID)
    inactive = key_client(tenant)
    for client in (bad, malformed, inactive):
        if client is inactive:
            type(tenant).objects.filter(pk=tenant.pk).update(is_active=False)  # the key was never cached
        direct = client.get(url(integration))
        with drf_only():
            drf = client.get(url(integration))
        assert isinstance(direct, Response)
        assert direct.status_code == drf.status_code == 401
        assert direct.content == drf.content
        assert dict(direct.items()) == dict(drf.items())


@pytest.mark.parametrize("path", ["{}", "not-a-uuid"])
def test_an_integration_not_found_is_the_views_404(tenant, integration, limit, path):
    client = key_client(tenant)
    target = f"/api/v1/integrations/{path.format(uuid.uuid4())}/"
    direct = client.get(target)
    assert isinstance(direct, Response)
    assert direct.status_code == 404
    assert direct.json()["error"]["code"] == "INTEGRATION_NOT_FOUND"
    assert_headers(direct, limit=limit, remaining=limit - 1)
    assert_headers(client.get(url(integration)), limit=limit, remaining=limit - 2)


def test_a_deleted_integration_is_the_views_404(tenant, integration, limit):
    client = key_client(tenant, role=Role.TENANT_ADMIN.value)
    assert client.delete(url(integration)).status_code == 204
    gone = client.get(url(integration))
    assert isinstance(gone, Response) and gone.status_code == 404


def test_a_failing_read_is_the_views_500(tenant, integration, limit, monkeypatch):
    from connections import selectors

    def fail(*args, **kwargs):
        raise RuntimeError("database gone")

    client = key_client(tenant)
    monkeypatch.setattr(selectors.TENANT_INTEGRATION, "rows", fail)
    failed = client.get(url(integration))
    assert isinstance(failed, Response)
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "INTERNAL_ERROR"
    assert failed.json()["error"]["request_id"] == REQUEST_ID
    assert b"database gone" not in failed.content
    assert_headers(failed, limit=limit, remaining=limit - 1)  # counted once


@pytest.mark.parametrize("extra", [
    {"QUERY_STRING": "format=json"},
    {"QUERY_STRING": "x=1"},
    {"HTTP_ACCEPT": "text/html"},
    {"HTTP_ACCEPT": "application/json; indent=4"},
    {"HTTP_ACCEPT": "application/json, text/plain"},
])
def test_a_query_or_another_accept_is_the_views(tenant, integration, limit, extra):
    client = key_client(tenant)
    response = client.get(url(integration), **extra)
    assert isinstance(response, Response)
    assert response.status_code in (200, 400, 406)
    assert_headers(response, limit=limit, remaining=limit - 1)


def test_other_methods_are_the_views(tenant, integration, limit):
    client = key_client(tenant, role=Role.TENANT_ADMIN.value)
    head = client.head(url(integration))
    assert isinstance(head, Response) and head.status_code == 200
    patched = client.patch(url(integration), {"name": "Renamed"}, format="json")
    assert isinstance(patched, Response) and patched.status_code == 200
    after = client.get(url(integration))
    assert not isinstance(after, Response)
    assert after.json()["name"] == "Renamed"  # a write is seen by the next direct read
    assert_headers(after, limit=limit, remaining=limit - 3)


def test_a_token_is_the_views_even_beside_a_key(tenant, integration, limit, client_for):
    member = client_for(Role.MEMBER.value)
    response = member.get(url(integration))
    assert isinstance(response, Response) and response.status_code == 200
    client = key_client(tenant)
    client.credentials(HTTP_X_API_KEY="ihk_nothere_nothing", HTTP_AUTHORIZATION=member._credentials[
        "HTTP_AUTHORIZATION"])
    both = client.get(url(integration))  # the token is read first, as DRF reads it: the bad key is not looked at
    assert isinstance(both, Response) and both.status_code == 200


def test_a_view_configured_otherwise_is_left_to_drf():
    class KeyOnly(views.IntegrationViewSet):
        authentication_classes = [ApiKeyAuthentication]

    view = KeyOnly.as_view({"get": "retrieve"})
    assert direct_read(view, views.tenant_integration) is view


def test_the_schema_still_describes_the_route(admin_client_api):
    schema = admin_client_api.get("/api/schema/?format=json").json()
    operations = schema["paths"]["/api/v1/integrations/{id}/"]
    assert {"get", "put", "patch", "delete"} <= set(operations)
