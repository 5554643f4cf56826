"""The demo upstream's REST API: the services behind the seeded demo integrations.

Each service asks for the credential type its demo integration stores:

- ``/inventory/*``: an API key in ``X-API-Key`` (the polled "Demo inventory API");
- ``/payments/*``: a bearer token (the "Demo payments" integration, whose
  status updates arrive as webhooks from the sender);
- ``/shipping/*``: HTTP Basic;
- ``/crm/*``: an access token issued by the demo authorization server
  (``oauth.py``), the "Demo CRM" OAuth integration.

The credentials are fixed, well-known demo values (the upstream listens on
loopback and is never part of a production stack); ``seed_demo`` stores the
same values in the demo integrations.
"""
import base64
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime

from .routing import Response, Route, json_response

INVENTORY_KEY_HEADER = "X-API-Key"
INVENTORY_API_KEY = "demo-inventory-key-5b0c7e21f4"
PAYMENTS_TOKEN = "demo-payments-token-8d41a9c3e7"
SHIPPING_USERNAME = "demo-shipper"
SHIPPING_PASSWORD = "demo-shipping-pass-63f2a"

ROTATE_EVERY_SECONDS = 4.0
# Raw statuses as the upstream reports them. All but UNKNOWN_STATUS are in the demo status
# mapping; UNKNOWN_STATUS shows how the hub counts a value it cannot map.
UNKNOWN_STATUS = "backordered"
INVENTORY_STATUSES = ("in_stock", "reserved", "on_hold", "sold", UNKNOWN_STATUS, "coming_soon")
INVENTORY_ITEMS = ("Espresso machine", "Grinder", "Milk frother", "Kettle", "Scale", "Tamper")
PAYMENT_STATUSES = ("pending", "completed", "on_hold", "closed")
PAYMENT_ITEMS = ("Order 2001", "Order 2002", "Order 2003", "Order 2004")
SHIPMENTS = (
    {"id": "SHP-001", "carrier": "Demo Post", "status": "in_transit"},
    {"id": "SHP-002", "carrier": "Demo Freight", "status": "delivered"},
)
CONTACTS = (
    {"id": "C-1", "name": "Ada Lovelace", "company": "Analytical Engines"},
    {"id": "C-2", "name": "Grace Hopper", "company": "Compilers Inc."},
)


class StatusFeed:
    """Items whose raw statuses move on every ``period`` seconds.

    Computed from the clock alone, so every reader (the API, the sender, two
    processes) sees the same statuses at the same time. Item 0 changes on
    every tick, item 1 on every second tick, item 2 on every third, and so on
    round: between two reads a few seconds apart some items change and some
    stay.
    """

    def __init__(self, *, prefix: str, names: tuple[str, ...], statuses: tuple[str, ...], period: float,
                 clock: Callable[[], float] = time.time):
        self.prefix, self.names, self.statuses = prefix, names, statuses
        self.period = max(0.1, float(period))
        self.clock = clock

    def tick(self, now: float | None = None) -> int:
        return int((self.clock() if now is None else now) // self.period)

    def items(self, now: float | None = None) -> list[dict]:
        tick = self.tick(now)
        items = []
        for index, name in enumerate(self.names):
            every = index % 3 + 1
            step = tick // every
            changed_at = datetime.fromtimestamp(step * every * self.period, tz=UTC)
            items.append({
                "id": f"{self.prefix}{index + 1:03d}",
                "name": name,
                "status": self.statuses[(step + index) % len(self.statuses)],
                "updated_at": changed_at.isoformat().replace("+00:00", "Z"),
            })
        return items


def inventory_feed(*, period: float, clock: Callable[[], float] = time.time) -> StatusFeed:
    return StatusFeed(prefix="SKU-", names=INVENTORY_ITEMS, statuses=INVENTORY_STATUSES, period=period, clock=clock)


def payments_feed(*, period: float, clock: Callable[[], float] = time.time) -> StatusFeed:
    return StatusFeed(prefix="PAY-", names=PAYMENT_ITEMS, statuses=PAYMENT_STATUSES, period=period, clock=clock)


# --- credential checks -------------------------------------------------------------------------------------


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _bearer(request) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


def api_key_check(request) -> bool:
    return _same(request.headers.get(INVENTORY_KEY_HEADER, ""), INVENTORY_API_KEY)


def bearer_check(request) -> bool:
    return _same(_bearer(request), PAYMENTS_TOKEN)


def basic_check(request) -> bool:
    header = request.headers.get("Authorization", "")
    if header[:6].lower() != "basic ":
        return False
    try:
        username, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return _same(username, SHIPPING_USERNAME) & _same(password, SHIPPING_PASSWORD)


AUTH_CHECKS = {"api_key": api_key_check, "bearer": bearer_check, "basic": basic_check}
CHALLENGES = {
    "api_key": f'ApiKey header="{INVENTORY_KEY_HEADER}"',
    "bearer": 'Bearer realm="demo-payments"',
    "basic": 'Basic realm="demo-shipping"',
    "oauth": 'Bearer realm="demo-crm", error="invalid_token"',
}


def unauthorized(kind: str):
    messages = {
        "api_key": f"Send the demo API key in the {INVENTORY_KEY_HEADER} header.",
        "bearer": "Send the demo payments token as 'Authorization: Bearer …'.",
        "basic": "Send the demo shipping username and password with HTTP Basic.",
        "oauth": "Send a live access token from /oauth/token as 'Authorization: Bearer …'.",
    }
    return json_response({"error": "unauthorized", "message": messages[kind]}, 401,
                         {"WWW-Authenticate": CHALLENGES[kind]})


# --- routes --------------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")


def search_answer(request, items: list[dict], entity: str, link: str) -> Response:
    """What a search endpoint of a service answers: the items whose name or status holds ``q``
    (case-insensitive), best match first, ``limit`` of them after ``offset``; ``type`` (comma-separated
    entities) leaves out other entities. The field names are the hub's defaults (search_config)."""
    query = request.query.get("q", "").strip().casefold()
    wanted = {t for t in request.query.get("type", "").split(",") if t}
    try:
        limit = max(1, min(50, int(request.query.get("limit", "10"))))
        offset = max(0, int(request.query.get("offset", "0")))
    except ValueError:
        return json_response({"error": "limit and offset are numbers"}, status=400)
    found = []
    for item in items:
        name, status = item["name"].casefold(), str(item.get("status", "")).casefold()
        if (wanted and entity not in wanted) or (query and query not in name and query not in status):
            continue
        score = 1.0 if name.startswith(query) else 0.8 if query in name else 0.5
        found.append({"id": item["id"], "name": item["name"], "description": f"{item['name']}: {status or 'n/a'}",
                      "url": f"{link}/{item['id']}", "type": entity, "updated_at": item.get("updated_at"),
                      "score": score})
    found.sort(key=lambda item: -item["score"])
    return json_response({"results": found[offset:offset + limit], "total": len(found)})


def routes(upstream) -> dict:
    """The REST routes; ``upstream`` holds the feeds."""
    def health(request):
        return json_response({"status": "ok", "time": _now()})

    def ping(service: str):
        return lambda request: json_response({"ok": True, "service": service, "time": _now()})

    def inventory_items(request):
        items = upstream.inventory.items()
        return json_response({"items": items, "total": len(items)})

    def payments_charges(request):
        items = [item for item in upstream.payments.items()
                 if not request.query.get("status") or item["status"] == request.query["status"]]
        try:
            limit = max(1, min(100, int(request.query.get("limit", "100"))))
        except ValueError:
            return json_response({"error": "limit is a number"}, status=400)
        return json_response({"data": items[:limit], "total": len(items)})

    def payments_search(request):
        return search_answer(request, upstream.payments.items(), "charges", "https://payments.demo.example/charges")

    def shipments(request):
        return json_response({"results": SHIPMENTS})

    def shipping_search(request):
        items = [{"id": s["id"], "name": f"{s['id']} by {s['carrier']}", "status": s["status"], "updated_at": _now()}
                 for s in SHIPMENTS]
        return search_answer(request, items, "shipments", "https://shipping.demo.example/track")

    def crm_me(request):
        claims = request.auth
        return json_response({"id": claims["s"], "name": "Dana Demo", "email": "dana@example.com",
                              "scopes": claims["sc"].split()})

    def crm_contacts(request):
        return json_response({"results": CONTACTS, "total": len(CONTACTS)})

    def crm_search(request):
        items = [{"id": c["id"], "name": c["name"], "status": c["company"], "updated_at": _now()} for c in CONTACTS]
        return search_answer(request, items, "contacts", "https://crm.demo.example/contacts")

    return {
        ("GET", "/health"): Route(health),
        ("GET", "/inventory/ping"): Route(ping("inventory"), auth="api_key"),
        ("GET", "/inventory/items"): Route(inventory_items, auth="api_key"),
        ("GET", "/payments/ping"): Route(ping("payments"), auth="bearer"),
        ("GET", "/payments/charges"): Route(payments_charges, auth="bearer"),
        ("GET", "/payments/search"): Route(payments_search, auth="bearer"),
        ("GET", "/shipping/ping"): Route(ping("shipping"), auth="basic"),
        ("GET", "/shipping/shipments"): Route(shipments, auth="basic"),
        ("GET", "/shipping/search"): Route(shipping_search, auth="basic"),
        ("GET", "/crm/me"): Route(crm_me, auth="oauth"),
        ("GET", "/crm/contacts"): Route(crm_contacts, auth="oauth"),
        ("GET", "/crm/search"): Route(crm_search, auth="oauth"),
    }
