"""Sessions, the session user and messages run for pages, and for an API request only when it carries a
session cookie (integrations_site/middleware.py)."""
from django.conf import settings
from django.test import Client

from tenants.choices import Role
from tests.conftest import make_user


def test_an_api_or_ops_request_without_a_session_cookie_touches_no_session(client, db):
    for path in ("/healthz", "/api/v1/integrations/", "/hooks/nothing-here"):
        response = client.get(path)
        assert "Cookie" not in response.get("Vary", ""), path
        assert settings.SESSION_COOKIE_NAME not in response.cookies
        assert not hasattr(response.wsgi_request, "session"), path


def test_a_page_request_has_its_session_and_user(client, db):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert hasattr(response.wsgi_request, "session") and response.wsgi_request.user.is_anonymous
    assert response["X-Frame-Options"] == "DENY"


def test_an_api_request_with_a_session_cookie_is_authenticated_by_it(db, tenant):
    client = Client()
    client.force_login(make_user(Role.TENANT_ADMIN, tenant, "session-admin"))

    response = client.get("/api/v1/integrations/", HTTP_X_TENANT=tenant.slug)

    assert response.status_code == 200, response.content
    assert response.wsgi_request.user.username == "session-admin"
    assert Client().get("/api/v1/integrations/", HTTP_X_TENANT=tenant.slug).status_code == 401


def test_a_session_login_and_a_csrf_checked_post_still_work_on_the_admin(db):
    from tests.tenants.factories import UserFactory

    user = UserFactory(username="staffer", is_staff=True, is_superuser=True)
    user.set_password("a-long-enough-password-1")
    user.save()
    client = Client(enforce_csrf_checks=True)
    page = client.get("/admin/login/")
    token = page.cookies[settings.CSRF_COOKIE_NAME].value
    refused = client.post("/admin/login/", {"username": "staffer", "password": "a-long-enough-password-1"})
    assert refused.status_code == 403
    logged_in = client.post("/admin/login/?next=/admin/", {
        "username": "staffer", "password": "a-long-enough-password-1", "csrfmiddlewaretoken": token,
    })
    assert logged_in.status_code == 302 and logged_in["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
