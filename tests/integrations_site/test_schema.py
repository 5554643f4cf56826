"""The OpenAPI document: valid, warning-free, and covering the contract of DESIGN.md."""
import importlib.util
import json
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from drf_spectacular.drainage import reset_generator_stats
from drf_spectacular.generators import SchemaGenerator

CONTRACT_TOOL = Path(__file__).resolve().parents[3] / "shared/tools/contract_paths.py"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
PARAM = re.compile(r"\{[^}/]+\}")
ERROR_ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"
ERROR_STATUSES = ("400", "401", "403", "404")
# Opened by a browser, not an API client: a refused callback is an HTML page.
HTML_400_PAGES = {("/api/v1/oauth/callback", "get")}

# The "foundation" rows of DESIGN.md's path table, used only when the shared
# tool is not beside the repository (a checkout without ../shared).
FOUNDATION_FALLBACK = [
    ("/api/v1/auth/token/", "post"),
    ("/api/v1/auth/token/refresh/", "post"),
    ("/api/v1/admin/providers/", "get"),
    ("/api/v1/admin/providers/", "post"),
    ("/api/v1/admin/providers/{}/", "get"),
    ("/api/v1/admin/providers/{}/", "patch"),
    ("/api/v1/admin/providers/{}/", "delete"),
    ("/api/v1/admin/providers/{}/status", "patch"),
    ("/api/v1/admin/providers/{}/audience", "patch"),
    ("/api/v1/admin/tenants/", "get"),
    ("/api/v1/admin/tenants/", "post"),
    ("/api/v1/admin/tenants/{}/", "get"),
    ("/api/v1/catalog/", "get"),
    ("/api/v1/catalog/{}/", "get"),
    ("/api/v1/integrations/", "get"),
    ("/api/v1/integrations/", "post"),
    ("/api/v1/integrations/{}/", "get"),
    ("/api/v1/integrations/{}/", "patch"),
    ("/api/v1/integrations/{}/", "delete"),
    ("/api/v1/integrations/{}/enable", "post"),
    ("/api/v1/integrations/{}/disable", "post"),
    ("/api/v1/integrations/{}/credentials", "put"),
    ("/api/v1/integrations/{}/credentials", "delete"),
    ("/api/v1/integrations/{}/connection", "get"),
    ("/api/v1/integrations/{}/versions/", "get"),
    ("/api/v1/integrations/{}/versions/{}/restore", "post"),
    ("/api/v1/api-keys/", "get"),
    ("/api/v1/api-keys/", "post"),
    ("/api/v1/api-keys/{}/", "delete"),
    ("/api/v1/audit-events/", "get"),
    ("/api/v1/admin/audit-events/", "get"),
    ("/api/v1/tenant/", "get"),
    ("/api/v1/tenant/", "patch"),
]


def contract_areas() -> dict[str, list[tuple[str, str]]]:
    """Every area of ../shared/tools/contract_paths.py, else the foundation copy above."""
    if not CONTRACT_TOOL.is_file():
        return {"foundation": FOUNDATION_FALLBACK}
    spec = importlib.util.spec_from_file_location("contract_paths", CONTRACT_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {area: list(items) for area, items in module.CONTRACT.items()}


def foundation_operations() -> list[tuple[str, str]]:
    return contract_areas()["foundation"]


@pytest.fixture(scope="module")
def openapi():
    reset_generator_stats()
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(openapi):
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def test_spectacular_command_validates_without_warnings(tmp_path):
    reset_generator_stats()
    out = tmp_path / "schema.json"
    # Raises SchemaGenerationError on any warning, SchemaValidationError on an invalid document.
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", "--file", str(out))
    document = json.loads(out.read_text())
    assert document["openapi"].startswith("3.")
    assert document["paths"], "the document lists no path"


def test_every_foundation_contract_operation_is_documented(openapi):
    documented: dict[str, set[str]] = {}
    for path, method, _ in operations(openapi):
        documented.setdefault(PARAM.sub("{}", path), set()).add(method)
    expected = foundation_operations()
    assert len(expected) >= 30
    missing = [f"{method.upper()} {path}" for path, method in expected if method not in documented.get(path, set())]
    assert missing == []


def test_every_contract_area_is_complete(openapi):
    """What ``contract_paths.py`` reports: no operation of any area is missing."""
    documented: dict[str, set[str]] = {}
    for path, method, _ in operations(openapi):
        documented.setdefault(PARAM.sub("{}", path), set()).add(method)
    missing = [
        f"{area}: {method.upper()} {path}"
        for area, items in contract_areas().items()
        for path, method in items
        if method not in documented.get(path, set())
    ]
    assert missing == []


def test_security_schemes_describe_jwt_bearer_and_api_key(openapi):
    schemes = openapi["components"]["securitySchemes"]
    bearer = [s for s in schemes.values() if s.get("type") == "http" and s.get("scheme") == "bearer"]
    assert bearer and bearer[0].get("bearerFormat") == "JWT"
    api_key = [s for s in schemes.values() if s.get("type") == "apiKey" and s.get("in") == "header"]
    assert api_key and api_key[0]["name"] == "X-API-Key"
    tenant_ops = [op for path, _, op in operations(openapi) if path.startswith("/api/v1/integrations/")]
    assert tenant_ops
    for operation in tenant_ops:
        used = {name for requirement in operation.get("security", []) for name in requirement}
        assert {"jwtAuth", "ApiKeyAuth"} <= used


def test_every_api_operation_documents_error_responses_with_the_envelope(openapi):
    api_ops = [(path, method, op) for path, method, op in operations(openapi) if path.startswith("/api/v1/")]
    assert len(api_ops) >= 33
    problems = []
    for path, method, operation in api_ops:
        for code in ERROR_STATUSES:
            content = (operation["responses"].get(code) or {}).get("content", {})
            if code == "400" and (path, method) in HTML_400_PAGES:
                if "text/html" not in content:
                    problems.append(f"{method.upper()} {path} {code} (HTML page)")
                continue
            if content.get("application/json", {}).get("schema", {}).get("$ref") != ERROR_ENVELOPE_REF:
                problems.append(f"{method.upper()} {path} {code}")
    assert problems == []


def test_error_envelope_component_has_the_contract_fields(openapi):
    schemas = openapi["components"]["schemas"]
    envelope = schemas["ErrorEnvelope"]
    assert envelope["required"] == ["error"]
    body_ref = envelope["properties"]["error"]["$ref"].rsplit("/", 1)[-1]
    body = schemas[body_ref]
    assert {"code", "message", "details", "request_id"} <= set(body["properties"])


# --- plain Django views: the webhook receiver and the ops endpoints ------------------------------------------

PLAIN_VIEW_OPERATIONS = {
    ("/hooks/{path}", "post"): {"202", "200", "400", "401", "404", "405", "413", "429"},
    ("/healthz", "get"): {"200", "405"},
    ("/readyz", "get"): {"200", "405", "503"},
    ("/metrics", "get"): {"200", "401", "405"},
}


def _validate(document: dict, schema: dict, instance) -> None:
    """``instance`` against ``schema``, whose ``$ref``s point into ``document``."""
    import jsonschema

    jsonschema.Draft7Validator({**schema, "components": document["components"]}).validate(instance)


def _response_schema(document: dict, path: str, method: str, status: int) -> dict:
    return document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]


def test_plain_views_are_documented_with_their_answers(openapi):
    for (path, method), codes in PLAIN_VIEW_OPERATIONS.items():
        operation = openapi["paths"][path][method]
        assert set(operation["responses"]) == codes, path
        for code, response in operation["responses"].items():
            if code.startswith(("4", "5")) and code != "503":
                assert response["content"]["application/json"]["schema"]["$ref"] == ERROR_ENVELOPE_REF, (path, code)
    receiver = openapi["paths"]["/hooks/{path}"]["post"]
    assert receiver["security"] == []
    assert [p["name"] for p in receiver["parameters"]] == ["path"]
    assert "text/plain" in openapi["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert openapi["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Readiness"
    }


@pytest.mark.django_db
def test_the_receivers_answers_match_the_document(client, openapi, integration, settings, sent_tasks):
    from audit.services import SYSTEM
    from tests.webhooks.signing import signed_headers
    from webhooks import services
    from webhooks.services.handoff import PROCESS_EVENTS

    settings.WEBHOOK_HANDOFF = "immediate"  # handed off at once, and recorded instead of sent
    endpoint, secret = services.endpoint_create(
        actor=SYSTEM, tenant=integration.tenant, integration=integration,
        data={"name": "orders", "signature_scheme": "hmac_sha256"},
    )
    body = b'{"id": "evt_1", "status": "open"}'
    headers = signed_headers("hmac_sha256", secret, body)
    path = "/hooks/{path}"
    for expected in (202, 200):  # the second delivery of the same body is a duplicate
        answer = client.post(endpoint.url_path, body, content_type="application/json", headers=headers)
        assert answer.status_code == expected
        _validate(openapi, _response_schema(openapi, path, "post", expected), answer.json())
    assert len(sent_tasks[PROCESS_EVENTS]) == 1
    refused = client.post(endpoint.url_path, body, content_type="application/json", headers={"X-Signature": "x"})
    assert refused.status_code == 401
    _validate(openapi, _response_schema(openapi, path, "post", 401), refused.json())
    wrong_method = client.get(endpoint.url_path)
    assert wrong_method.status_code == 405 and wrong_method["Allow"] == "POST"
    _validate(openapi, _response_schema(openapi, path, "post", 405), wrong_method.json())


@pytest.mark.django_db
def test_the_ops_answers_match_the_document(client, openapi, settings):
    live = client.get("/healthz")
    _validate(openapi, _response_schema(openapi, "/healthz", "get", 200), live.json())
    ready = client.get("/readyz")
    assert ready.status_code in (200, 503)
    _validate(openapi, _response_schema(openapi, "/readyz", "get", ready.status_code), ready.json())
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics["Content-Type"].startswith("text/plain")
    settings.METRICS_TOKEN = "scrape-token-0123"
    refused = client.get("/metrics")
    assert refused.status_code == 401
    _validate(openapi, _response_schema(openapi, "/metrics", "get", 401), refused.json())
    scheme = openapi["components"]["securitySchemes"]["metricsToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")



def test_a_poll_whose_status_endpoint_fails_is_documented_as_502(openapi):
    responses = openapi["paths"]["/api/v1/integrations/{id}/poll"]["post"]["responses"]
    assert {"200", "202", "502"} <= set(responses)
    assert responses["502"]["content"]["application/json"]["schema"]["$ref"] == ERROR_ENVELOPE_REF


def test_request_bodies_of_strict_serializers_admit_no_other_field(openapi):
    schemas = openapi["components"]["schemas"]
    for name in ("IntegrationRequest", "PatchedIntegrationRequest", "WebhookEndpointRequest", "ApiKeyRequest",
                 "TokenObtainRequest", "BearerCredentialRequest", "PatchedTenantRequest",
                 "PatchedTenantPolicyUpdateRequest"):
        assert schemas[name]["additionalProperties"] is False, name


def test_list_parameters_say_what_the_api_accepts(openapi):
    parameters = {p["name"]: p for p in openapi["paths"]["/api/v1/integrations/"]["get"]["parameters"]}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1}
    assert parameters["offset"]["schema"] == {"type": "integer", "minimum": 0}
    ordering = parameters["ordering"]
    assert (ordering["style"], ordering["explode"]) == ("form", False)
    assert {"name", "-name", "created_at", "-created_at"} <= set(ordering["schema"]["items"]["enum"])
