"""The API's commonest read, answered without DRF's request cycle: one object, read with an API key.

A client polling ``GET /api/v1/integrations/{id}/`` with its API key spends most of the answer's time in
DRF's request cycle (wrapping the request, negotiation, authenticators, permission and throttle classes,
the response's rendering and its headers), not in the read: bench/README.md. For exactly that request the
answer is made here, from the pieces the view itself uses: the API-key authenticator (its rate count in
the same round trip), the role matrix, the view's read and the API's renderer, with the headers DRF gives
the answer (``Allow``, ``Vary``, the rate limit's).

That request is a GET with no query string, accepting JSON as nearly every client asks (no ``Accept``,
``*/*``, ``application/json``), carrying an API key and no other credentials, the key accepted, the rate
count allowing it, the key's role holding the permission and the object found. Anything else (another
method, a query, a token or a session, a refusal of any kind, an object not found, a failure) goes on
to the view, which answers it as before; what was done here (the key's check and its rate count) is
handed to it (``api_key_outcome``, ``rate_precounted`` on the request), not done twice.
tests/integrations_site/test_direct.py holds the two answers equal, headers and bytes.
"""
import functools

from django.conf import settings
from django.http import HttpResponse
from django.urls import URLPattern
from rest_framework.settings import api_settings

from tenants.authentication import ApiKeyAuthentication, TenantJWTAuthentication

from . import throttles
from .negotiation import COMMON_ACCEPT, JSON
from .permissions import RolePermission, role_allows
from .renderers import JSONRenderer

# The classes the answer made here stands for; a view configured otherwise is always left to DRF.
EXPECTED = {
    "authentication_classes": (TenantJWTAuthentication, ApiKeyAuthentication),  # the first two, in this order
    "permission_classes": (RolePermission,),
    "throttle_classes": (throttles.FamilyRateThrottle,),
}


def direct_reads(patterns: list, reads: dict) -> list:
    """``patterns`` (a router's), the GET of each one named in ``reads`` answered by ``reads[name]`` first."""
    return [
        URLPattern(pattern.pattern, direct_read(pattern.callback, reads[pattern.name]), pattern.default_args,
                   pattern.name)
        if getattr(pattern, "name", None) in reads else pattern
        for pattern in patterns
    ]


def direct_read(view, read):
    """``view`` (a viewset's callback) with its GET answered by ``read(ctx, **kwargs)`` when it can be.

    ``read`` gives the answer's data, or None for the view to answer (not found, say)."""
    cls = view.cls
    if not _standard(cls):
        return view
    action = view.actions["get"]
    family = cls.throttle_family_of(action)
    if family not in settings.API_RATE_LIMITS:
        return view
    permission = cls.permission_of(action)
    headers = _view_headers(view)
    authenticator = ApiKeyAuthentication()
    keyword = authenticator.keyword.lower()  # an Authorization header of another scheme is another authenticator's
    renderer = JSONRenderer()

    def answer(request, kwargs):
        meta = request.META
        if (request.method != "GET" or meta.get("QUERY_STRING") or meta.get("HTTP_ACCEPT", "*/*") not in COMMON_ACCEPT
                or meta.get("HTTP_AUTHORIZATION", keyword).partition(" ")[0].lower() != keyword):
            return None
        raw = authenticator.raw_key(request)
        if raw is None:
            return None
        try:
            user, ctx = authenticator.authenticate_key(raw, request, family)
        except Exception:  # noqa: BLE001 (a refusal, or a failure: the view answers either as it does)
            return None
        # Counted with the key's lookup on Redis; elsewhere now, and handed to the view's throttle either way.
        allowed, state = throttles.count_request(request, family, throttles.api_key_caller(ctx.api_key.key_hash))
        if not allowed or ctx.tenant is None or not role_allows(ctx.role, permission):
            return None
        try:
            data = read(ctx, **kwargs)
        except Exception:  # noqa: BLE001 (the view reads again, and answers a failure as it does)
            return None
        if data is None:
            return None
        request.user, request.auth = user, ctx  # as DRF leaves them on the request
        response = HttpResponse(renderer.render(data), content_type=JSON)
        for name, value in headers:
            response[name] = value
        for name, value in state.headers().items():
            response[name] = value
        response.data = data
        return response

    @functools.wraps(view)
    def callback(request, *args, **kwargs):
        response = None if args else answer(request, kwargs)
        return view(request, *args, **kwargs) if response is None else response

    return callback


def _standard(cls) -> bool:
    return (
        hasattr(cls, "throttle_family_of") and hasattr(cls, "permission_of")
        and tuple(cls.authentication_classes[:2]) == EXPECTED["authentication_classes"]
        and tuple(cls.permission_classes) == EXPECTED["permission_classes"]
        and tuple(cls.throttle_classes) == EXPECTED["throttle_classes"]
        and tuple(cls.renderer_classes[:1]) == (JSONRenderer,)
        and cls.content_negotiation_class is api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS
    )


def _view_headers(view) -> list[tuple[str, str]]:
    """``Allow`` and ``Vary`` as DRF gives them to this view's answers: the ``default_response_headers`` of
    an instance bound to its actions as the viewset's ``as_view`` binds the one that answers a request."""
    instance = view.cls(**view.initkwargs)
    actions = dict(view.actions)
    if "get" in actions:
        actions.setdefault("head", actions["get"])
    for method, action in actions.items():
        setattr(instance, method, getattr(instance, action))
    return list(instance.default_response_headers.items())
