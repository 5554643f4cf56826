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


def foundation_operations() -> list[tuple[str, str]]:
    """The foundation area from ../shared/tools/contract_paths.py, else the copy above."""
    if not CONTRACT_TOOL.is_file():
        return FOUNDATION_FALLBACK
    spec = importlib.util.spec_from_file_location("contract_paths", CONTRACT_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CONTRACT["foundation"])


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
