def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["X-Request-ID"]


def test_unknown_api_path_is_enveloped_404(client):
    response = client.get("/api/v1/nope/", HTTP_X_REQUEST_ID="abc-123")
    assert response.status_code == 404
    body = response.json()
    assert body["error"]["code"] == "NOT_FOUND"
    assert body["error"]["request_id"] == "abc-123"
    assert response["X-Request-ID"] == "abc-123"


def test_create_integration_and_set_credentials(admin_client_api, provider):
    created = admin_client_api.post("/api/v1/integrations/", {"provider": provider.slug, "name": "Ours"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "pending" and body["credential"] is None and body["has_credentials"] is False
    put = admin_client_api.put(
        f"/api/v1/integrations/{body['id']}/credentials",
        {"type": "bearer", "token": "tok_live_0123456789abcdef"},
        format="json",
    )
    assert put.status_code == 200, put.content
    assert put.json()["hint"] == "cdef"
    detail = admin_client_api.get(f"/api/v1/integrations/{body['id']}/").json()
    assert detail["credential"] == {"type": "bearer", "hint": "cdef", "status": "active", "version": 1}


def test_healthz_refuses_post_with_the_envelope(client):
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert response["Allow"] == "GET, HEAD"
