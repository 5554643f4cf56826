"""Authentication: JWT (the token carries the tenant), API keys, admin sessions.

Each authenticator answers ``(user, TenantContext)`` so that views, the role
check and the audit trail read one object: ``request.auth``.
"""
import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication

from audit.services import Actor
from integrations_site.api import throttles
from integrations_site.nearcache import NearCache

from .choices import SUPER_ADMIN, SUPER_ADMIN_GROUP
from .models import ApiKey, Membership, Tenant

API_KEY_PREFIX = "ihk_"
TENANT_CLAIM = "tenant_id"


@dataclass(frozen=True)
class TenantContext:
    """The caller as the API sees it: tenant (None = platform-wide), role, and who."""

    tenant: Tenant | None
    role: str | None
    user: Any = None
    api_key: ApiKey | None = None

    @property
    def is_super_admin(self) -> bool:
        return self.role == SUPER_ADMIN

    @property
    def actor(self) -> Actor:
        return Actor(user=self.user if self.api_key is None else None, api_key=self.api_key)


def is_super_admin(user) -> bool:
    if not user or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.is_staff and user.groups.filter(name=SUPER_ADMIN_GROUP).exists()


def context_for_user(user, tenant_id=None, tenant_slug=None) -> TenantContext:
    """Resolve the tenant and role of a user for one tenant (or platform-wide)."""
    super_admin = is_super_admin(user)
    if tenant_id is None and tenant_slug is None:
        if super_admin:
            return TenantContext(tenant=None, role=SUPER_ADMIN, user=user)
        membership = (
            Membership.objects.select_related("tenant").filter(user=user, tenant__is_active=True).first()
        )
        if membership is None:
            return TenantContext(tenant=None, role=None, user=user)
        return TenantContext(tenant=membership.tenant, role=membership.role, user=user)
    lookup = {"tenant_id": tenant_id} if tenant_id is not None else {"tenant__slug": tenant_slug}
    membership = (
        Membership.objects.select_related("tenant").filter(user=user, tenant__is_active=True, **lookup).first()
    )
    if membership is not None:
        return TenantContext(tenant=membership.tenant, role=SUPER_ADMIN if super_admin else membership.role, user=user)
    if super_admin:
        tenant_lookup = {"id": tenant_id} if tenant_id is not None else {"slug": tenant_slug}
        tenant = Tenant.objects.filter(is_active=True, **tenant_lookup).first()
        if tenant is not None:
            return TenantContext(tenant=tenant, role=SUPER_ADMIN, user=user)
    raise exceptions.AuthenticationFailed("No active membership in that tenant.")


class TenantJWTAuthentication(JWTAuthentication):
    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, token = result
        tenant_id = token.get(TENANT_CLAIM)
        if tenant_id:
            return user, context_for_user(user, tenant_id=tenant_id)
        if is_super_admin(user):
            return user, context_for_user(user)
        raise exceptions.AuthenticationFailed("The token names no tenant.")


class TenantSessionAuthentication(authentication.SessionAuthentication):
    """Session auth for the admin and browsable API; ``X-Tenant`` picks a tenant by slug."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        slug = request.META.get("HTTP_X_TENANT") or None
        return user, context_for_user(user, tenant_slug=slug)


class ApiKeyUser:
    """The principal of a request authenticated by an API key (no Django user)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.username = f"api-key:{api_key.prefix}"

    def get_username(self):
        return self.username

    def __str__(self):
        return self.username


def hash_api_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def split_api_key(raw: str) -> str | None:
    """Return the lookup prefix of a well-formed key, else None."""
    if not raw.startswith(API_KEY_PREFIX):
        return None
    parts = raw[len(API_KEY_PREFIX):].split("_", 1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0]


# --- API keys looked up once per API_KEY_CACHE_SECONDS -------------------------------------------------
# A key with its tenant is kept in the shared cache under its SHA-256 (what the table stores, never the key),
# so a client's requests cost no query for it, and on Redis each web process keeps its own copy as well
# (``NEAR``), so most cost no round trip for it either. Revoking, deleting or changing a key, or changing
# its tenant (deactivated, plan), forgets it at once in the shared cache and in every process (signals,
# tenants/apps.py; integrations_site/nearcache.py); expiry and revocation are still checked on every
# request. Only a change made past the ORM (SQL, ``update()``) waits for the copies to end.

NEAR = NearCache("auth:api-key:forget")


def _cache_key(key_hash: str) -> str:
    return f"auth:api-key:{key_hash}"


def _near() -> bool:
    return settings.API_KEY_NEAR_CACHE and settings.API_KEY_CACHE_SECONDS > 0


def api_key_lookup(prefix: str, key_hash: str, request=None, family: str | None = None) -> ApiKey | None:
    """The key with ``prefix`` whose hash is ``key_hash``, with its tenant loaded; None when there is none.

    This process's copy first; else, with ``request`` and ``family``, the request is counted in that
    rate-limit family in the same round trip as the shared cache's copy is read (``throttles.get_and_hit``):
    one round trip to Redis for both."""
    generation = None  # taken before the shared cache and the table are read: see ``NearCache.put``
    if settings.API_KEY_CACHE_SECONDS > 0:
        name = _cache_key(key_hash)
        if _near():
            kept = NEAR.get(name)
            if _matches(kept, prefix, key_hash):
                return kept  # its rate count is the throttle's (``count_request``)
            generation = NEAR.generation()
        caller = throttles.api_key_caller(key_hash)
        try:
            kept, counted = throttles.get_and_hit(name, family, caller)
        except Exception:  # noqa: BLE001 (the cache being down costs a query, not the request)
            kept, counted = None, None
        if counted is not None:
            throttles.precount(request, family, caller, counted)
        if _matches(kept, prefix, key_hash):
            if generation is not None:
                NEAR.put(name, kept, settings.API_KEY_CACHE_SECONDS, generation)
            return kept
    api_key = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, key_hash):
        return None
    _remember(api_key, generation)
    return api_key


def _matches(kept, prefix: str, key_hash: str) -> bool:
    return kept is not None and kept.prefix == prefix and hmac.compare_digest(kept.key_hash, key_hash)


def _remember(api_key: ApiKey, generation: int | None = None) -> None:
    """Keep ``api_key`` in the shared cache, and here unless a forget came since ``generation`` (taken before
    ``api_key`` was read; now when not given)."""
    if settings.API_KEY_CACHE_SECONDS > 0:
        name = _cache_key(api_key.key_hash)
        if generation is None and _near():
            generation = NEAR.generation()
        try:
            cache.set(name, api_key, settings.API_KEY_CACHE_SECONDS)
        except Exception:  # noqa: BLE001
            return
        NEAR.put(name, api_key, settings.API_KEY_CACHE_SECONDS, generation)


def api_key_forget(sender, instance: ApiKey, **kwargs) -> None:
    _forget([instance.key_hash])


def tenant_keys_forget(sender, instance: Tenant, **kwargs) -> None:
    _forget(ApiKey.objects.filter(tenant_id=instance.pk).values_list("key_hash", flat=True))


def _forget(key_hashes) -> None:
    """Now, and again when the transaction commits: a request that read the row meanwhile (still the old
    one, the change not yet committed) may have kept it again."""
    keys = [_cache_key(key_hash) for key_hash in key_hashes]
    if keys:
        _delete(keys)
        transaction.on_commit(lambda: _delete(keys))


def _delete(keys: list[str]) -> None:
    try:
        cache.delete_many(keys)
    except Exception:  # noqa: BLE001 (a cache that is down holds nothing that could be read either)
        pass
    NEAR.forget(keys)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Api-Key <key>`` or ``X-API-Key: <key>``."""

    keyword = "Api-Key"

    def authenticate_header(self, request):
        return self.keyword

    def authenticate(self, request):
        raw = self.raw_key(request)
        if raw is None:
            return None
        view = getattr(request, "parser_context", {}).get("view")
        return self.authenticate_key(raw, request, throttles.view_family(view))

    def raw_key(self, request) -> str | None:
        """The key the request carries, None when it carries none (another authenticator's turn)."""
        raw = request.META.get("HTTP_X_API_KEY", "").strip()
        if raw:
            return raw
        scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        return value.strip() if scheme.lower() == self.keyword.lower() else None

    def authenticate_key(self, raw: str, request, family: str | None):
        """``(user, TenantContext)`` of the key ``raw``, counting the request in ``family`` on the way, or
        ``AuthenticationFailed``. The outcome is kept on the request: asked again for the same key (the
        direct read handing a request on to its view, ``api/direct.py``), it is given again, not redone."""
        kept = getattr(request, "api_key_outcome", None)
        if kept is None or kept[0] != raw:
            try:
                kept = (raw, self._authenticate_key(raw, request, family))
            except exceptions.AuthenticationFailed as exc:
                kept = (raw, exc)
            request.api_key_outcome = kept
        if isinstance(kept[1], exceptions.AuthenticationFailed):
            raise kept[1]
        return kept[1]

    def _authenticate_key(self, raw: str, request, family: str | None):
        prefix = split_api_key(raw)
        if prefix is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        api_key = api_key_lookup(prefix, hash_api_key(raw), request, family)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if api_key.is_revoked:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        if api_key.is_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.")
        if not api_key.tenant.is_active:
            raise exceptions.AuthenticationFailed("This tenant is not active.")
        self._touch(api_key)
        return ApiKeyUser(api_key), TenantContext(tenant=api_key.tenant, role=api_key.role, api_key=api_key)

    @staticmethod
    def _touch(api_key: ApiKey) -> None:
        # One write per key per resolution window, not one per request.
        now = timezone.now()
        window = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
        if api_key.last_used_at is None or now - api_key.last_used_at > window:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
            _remember(api_key)
