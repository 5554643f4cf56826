"""API conventions: the error envelope everywhere, and X-Request-ID end to end."""
import re

import pytest
from django.test import Client
from django.urls import path

from audit.models import AuditEvent
from connections.models import Integration
from tests.helpers import assert_envelope

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize("path", ["/api/v1/nope/", "/api/v2/integrations/", "/api/v1/integrations/x/y/z/"])
def test_unknown_api_path_is_an_enveloped_404(client, path):
    assert_envelope(client.get(path), 404, "NOT_FOUND")


def test_unknown_path_outside_the_api_is_an_enveloped_404(client):
    assert_envelope(client.get("/no-such-page/"), 404, "NOT_FOUND")


def test_unsupported_method_on_a_collection_is_405(client_for):
    error = assert_envelope(client_for("member").put("/api/v1/catalog/", {}, format="json"), 405, "METHOD_NOT_ALLOWED")
    assert "PUT" in error["message"]


def test_unsupported_method_on_own_tenant_is_405_not_403(client_for):
    assert_envelope(client_for("tenant_admin").post("/api/v1/tenant/", {}, format="json"), 405, "METHOD_NOT_ALLOWED")


def test_put_on_admin_provider_is_405(client_for, provider):
    response = client_for("super_admin").put(f"/api/v1/admin/providers/{provider.slug}/", {}, format="json")
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")


def test_malformed_json_body_is_400_validation_error(client_for, provider):
    response = client_for("tenant_admin").post(
        "/api/v1/integrations/", '{"provider": "generic-rest", "name": ', content_type="application/json"
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "Malformed" in error["message"] or "JSON" in error["message"]
    assert not Integration.objects.exists()


def test_json_array_instead_of_object_is_400(client_for):
    response = client_for("tenant_admin").patch("/api/v1/tenant/", [1, 2], format="json")
    assert_envelope(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/v1/integrations/", {"provider": "generic-rest", "name": "X", "colour": "red"}),
        ("/api/v1/api-keys/", {"name": "ci", "role": "member", "colour": "red"}),
    ],
)
def test_unknown_field_is_400_naming_the_field(client_for, provider, path, body):
    error = assert_envelope(client_for("tenant_admin").post(path, body, format="json"), 400, "VALIDATION_ERROR")
    assert "colour" in error["details"]


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/api/v1/api-keys/", {"name": 7, "role": "member"}, "name"),
        ("/api/v1/api-keys/", {"name": 1.5, "role": "member"}, "name"),
        ("/api/v1/integrations/", {"provider": "generic-rest", "name": 12345}, "name"),
    ],
)
def test_a_number_for_a_text_field_is_400_not_stored_as_text(client_for, provider, path, body, field):
    from tenants.models import ApiKey

    before = ApiKey.objects.count()
    error = assert_envelope(client_for("tenant_admin").post(path, body, format="json"), 400, "VALIDATION_ERROR")
    assert error["details"] == {field: ["Not a valid string."]}
    assert ApiKey.objects.count() == before


def test_unknown_field_on_patch_is_400_naming_the_field(client_for):
    response = client_for("tenant_admin").patch("/api/v1/tenant/", {"name": "New", "colour": "red"}, format="json")
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert list(error["details"]) == ["colour"]


def test_unauthenticated_request_is_401_not_authenticated(client):
    error = assert_envelope(client.get("/api/v1/integrations/"), 401, "NOT_AUTHENTICATED")
    assert error["details"] == {}


def test_garbage_bearer_token_is_401_with_a_readable_message(client):
    response = client.get("/api/v1/integrations/", HTTP_AUTHORIZATION="Bearer not.a.jwt")
    error = assert_envelope(response, 401, "NOT_AUTHENTICATED")
    assert "ErrorDetail" not in error["message"]


def test_caller_request_id_is_echoed_on_success_and_in_error_bodies(client_for):
    client = client_for("member")
    ok = client.get("/api/v1/catalog/", HTTP_X_REQUEST_ID="trace-42.abc:1")
    assert ok.status_code == 200
    assert ok["X-Request-ID"] == "trace-42.abc:1"

    denied = client.post("/api/v1/integrations/", {"name": "x"}, format="json", HTTP_X_REQUEST_ID="trace-43")
    error = assert_envelope(denied, 403, "PERMISSION_DENIED")
    assert error["request_id"] == "trace-43"


def test_request_id_is_generated_when_the_caller_sends_none(client):
    response = client.get("/api/v1/nope/")
    assert GENERATED_ID.match(response["X-Request-ID"])
    assert response.json()["error"]["request_id"] == response["X-Request-ID"]


def test_two_requests_get_different_generated_ids(client):
    assert client.get("/healthz")["X-Request-ID"] != client.get("/healthz")["X-Request-ID"]


@pytest.mark.parametrize("bogus", ["has spaces in it", "line\nbreak", "x" * 129, "semi;colon", "<script>"])
def test_unsafe_request_id_is_replaced_by_a_generated_one(client, bogus):
    response = client.get("/api/v1/nope/", HTTP_X_REQUEST_ID=bogus)
    assert response["X-Request-ID"] != bogus
    assert GENERATED_ID.match(response["X-Request-ID"])
    assert response.json()["error"]["request_id"] == response["X-Request-ID"]


def test_audit_event_carries_the_request_id_of_the_request_that_caused_it(client_for, provider):
    response = client_for("tenant_admin").post(
        "/api/v1/integrations/", {"provider": provider.slug, "name": "Traced"}, format="json",
        HTTP_X_REQUEST_ID="req-create-1",
    )
    assert response.status_code == 201
    event = AuditEvent.objects.get(action="integration.created")
    assert event.request_id == "req-create-1"
    assert event.ip == "127.0.0.1"


def test_audit_event_carries_a_generated_request_id_too(client_for):
    response = client_for("tenant_admin").patch("/api/v1/tenant/", {"name": "Acme Two"}, format="json")
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="tenant.updated")
    assert event.request_id == response["X-Request-ID"]
    assert GENERATED_ID.match(event.request_id)


def test_each_request_writes_its_own_request_id(client_for, provider):
    client = client_for("tenant_admin")
    created = client.post("/api/v1/integrations/", {"provider": provider.slug, "name": "A"}, format="json",
                          HTTP_X_REQUEST_ID="first")
    client.post(f"/api/v1/integrations/{created.json()['id']}/disable", HTTP_X_REQUEST_ID="second")
    assert AuditEvent.objects.get(action="integration.created").request_id == "first"
    assert AuditEvent.objects.get(action="integration.disabled").request_id == "second"


# --- unhandled errors with DEBUG on (the embedded run's default) ---------------------------------------------


def test_an_unhandled_error_in_the_receiver_is_an_enveloped_500_even_with_debug(client, db, settings, monkeypatch,
                                                                                caplog):
    from webhooks.services import receiving

    def broken(path, **kwargs):
        raise RuntimeError("database went away")

    settings.DEBUG = True
    monkeypatch.setattr(receiving, "endpoint_for_path", broken)
    with caplog.at_level("ERROR", logger="integrations_site.api"):
        response = client.post("/hooks/some-path", data=b"{}", content_type="application/json")
    assert_envelope(response, 500, "INTERNAL_ERROR")
    assert b"Traceback" not in response.content and b"database went away" not in response.content
    logged = [r for r in caplog.records if r.getMessage().startswith("api.unhandled_error")]
    assert logged and logged[0].exc_info[0] is RuntimeError  # the traceback is in the log


def test_an_unhandled_error_in_an_api_view_is_an_enveloped_500_even_with_debug(client_for, settings, monkeypatch):
    from connections.api import views as connection_views

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    settings.DEBUG = True
    monkeypatch.setattr(connection_views.IntegrationViewSet, "list", broken)
    response = client_for("tenant_admin").get("/api/v1/integrations/")
    assert_envelope(response, 500, "INTERNAL_ERROR")


def test_an_unhandled_error_in_an_ops_view_is_an_enveloped_500_even_with_debug(client, db, settings, monkeypatch):
    from integrations_site import views as ops_views

    monkeypatch.setattr(ops_views, "JsonResponse", None)  # healthz fails when it builds its answer
    settings.DEBUG = True
    assert_envelope(client.get("/healthz"), 500, "INTERNAL_ERROR")


def _broken_view(request):
    raise RuntimeError("page failed")


# This module doubles as a URLconf for the test below: a failing plain Django view inside and outside /api/.
urlpatterns = [path("broken-page", _broken_view), path("api/broken", _broken_view)]


def test_other_paths_keep_the_debug_page_with_debug_on(db, settings):
    settings.DEBUG = True
    settings.ROOT_URLCONF = __name__
    browser = Client(raise_request_exception=False)
    response = browser.get("/broken-page")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert b"page failed" in response.content  # Django's debug page, as on any Django site
    assert_envelope(browser.get("/api/broken"), 500, "INTERNAL_ERROR")


def test_generated_request_ids_are_hex_and_a_forked_worker_draws_its_own():
    import os

    from integrations_site.api.middleware import new_request_id

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a gunicorn worker forked from the master would draw first
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    mine = new_request_id()
    assert len(mine) == len(child) == 32 and int(mine, 16) >= 0 and child != mine
