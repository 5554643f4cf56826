"""The plain Django views (webhook receiver, ops endpoints) described next to the API."""





# --- Plain Django views in the document ------------------------------------------------
# The webhook receiver and the ops endpoints are plain Django views (no DRF on the hot path), so the
# generator does not see them; this hook describes them next to the API. Tests compare it with the views.

ERROR_ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
READINESS_COMPONENTS = ("database", "cache", "broker")
PLAIN_VIEW_SCHEMAS = {
    "WebhookAccepted": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["accepted"]},
            "event_id": {"type": "string", "format": "uuid"},
        },
        "required": ["status", "event_id"],
    },
    "WebhookDuplicate": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["duplicate"]},
            "event_id": {"type": "string", "format": "uuid", "description": "The event first received."},
        },
        "required": ["status", "event_id"],
    },
    "Liveness": {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
        "required": ["status"],
    },
    "ReadinessComponent": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "down"]},
            "service": {"type": "string", "description": "What backs it: database, redis, cache or broker."},
            "latency_ms": {"type": "integer"},
            "error": {"type": "string", "description": "Why it is down (an exception name, or TimeoutError)."},
        },
        "required": ["status", "service", "latency_ms"],
    },
    "Readiness": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "components": {
                "type": "object",
                "properties": {name: {"$ref": "#/components/schemas/ReadinessComponent"}
                               for name in READINESS_COMPONENTS},
                "required": list(READINESS_COMPONENTS),
            },
            "down": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The services that are down; present only when one is.",
            },
        },
        "required": ["status", "components"],
    },
}


def _error(description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": ERROR_ENVELOPE}}}
    if headers:
        response["headers"] = headers
    return response


def _json(description: str, component: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }


ALLOW = {"Allow": {"schema": {"type": "string"}, "description": "The methods this path serves."}}


def _plain_view_paths() -> dict:
    receiver = {
        "operationId": "webhook_receive",
        "summary": "Receive a webhook delivery",
        "description": (
            "The public receiver of a webhook endpoint (`path` from `/api/v1/webhooks/`). The body is "
            "verified as raw bytes against the endpoint's signature scheme (hmac_sha256, standard_webhooks, "
            "stripe, github, slack, shopify: each reads its own headers), stored, then processed in the "
            "background. Any content type is accepted. A delivery already received (same dedupe key) is "
            "answered 200 with the first event's id."
        ),
        "tags": ["webhooks"],
        "security": [],
        "parameters": [
            {
                "name": "path",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "The endpoint's path.",
            }
        ],
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": {}},
                "*/*": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "202": _json("Accepted: stored and queued for processing.", "WebhookAccepted"),
            "200": _json("Duplicate: this delivery was received before.", "WebhookDuplicate"),
            "400": _error("Empty body on an endpoint that does not verify signatures (VALIDATION_ERROR)."),
            "401": _error("Signature refused (SIGNATURE_INVALID)."),
            "404": _error("No webhook endpoint at this path (NOT_FOUND)."),
            "405": _error("Only POST (METHOD_NOT_ALLOWED).", ALLOW),
            "413": _error("Body larger than the endpoint's max_body_bytes (PAYLOAD_TOO_LARGE)."),
            "429": _error(
                "Too many deliveries to this endpoint (RATE_LIMIT_EXCEEDED).",
                {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
            ),
        },
    }
    healthz = {
        "operationId": "healthz",
        "summary": "Liveness",
        "description": "The process answers. Checks nothing else (see /readyz).",
        "tags": ["ops"],
        "security": [],
        "responses": {
            "200": _json("Alive.", "Liveness"),
            "405": _error("Only GET and HEAD (METHOD_NOT_ALLOWED).", ALLOW),
        },
    }
    readyz = {
        "operationId": "readyz",
        "summary": "Readiness",
        "description": (
            "The database, the cache and the broker each answer within READYZ_TIMEOUT seconds; "
            "otherwise 503, naming the services that are down."
        ),
        "tags": ["ops"],
        "security": [],
        "responses": {
            "200": _json("Ready: every component is ok.", "Readiness"),
            "405": _error("Only GET and HEAD (METHOD_NOT_ALLOWED).", ALLOW),
            "503": _json("Not ready: at least one component is down.", "Readiness"),
        },
    }
    metrics = {
        "operationId": "metrics",
        "summary": "Prometheus metrics",
        "description": (
            "Prometheus text exposition format: HTTP requests by route, and business figures read from "
            "the database at scrape time. When METRICS_TOKEN is set, it is required as a bearer token."
        ),
        "tags": ["ops"],
        "security": [{}, {"metricsToken": []}],
        "responses": {
            "200": {
                "description": "The metrics.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "401": _error("METRICS_TOKEN is set and the request does not carry it (NOT_AUTHENTICATED)."),
            "405": _error("Only GET and HEAD (METHOD_NOT_ALLOWED).", ALLOW),
        },
    }
    return {
        "/hooks/{path}": {"post": receiver},
        "/healthz": {"get": healthz},
        "/readyz": {"get": readyz},
        "/metrics": {"get": metrics},
    }


def plain_views_hook(result, generator, request, public):
    """Add the webhook receiver, /healthz, /readyz and /metrics (plain Django views) to the document.

    Their errors use the ``ErrorEnvelope`` component that every API operation already refers to.
    """
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in PLAIN_VIEW_SCHEMAS.items():
        schemas.setdefault(name, schema)
    components.setdefault("securitySchemes", {}).setdefault(
        "metricsToken",
        {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN, when the deployment sets one."},
    )
    result.setdefault("paths", {}).update(_plain_view_paths())
    return result
