"""Base viewsets: the tenant is resolved once per request and applied to every queryset."""
from rest_framework import mixins, viewsets

from .errors import ApiError, NotFoundError, ValidationFailed


class RoleMappedMixin:
    """Views name the permission each action needs; ``RolePermission`` checks it."""

    permission_map: dict[str, str] = {}
    # Rate-limit family of the view, and per-action exceptions (integrations_site.api.throttles).
    throttle_family: str | None = None
    throttle_families: dict[str, str] = {}

    def get_throttle_family(self) -> str | None:
        return self.throttle_family_of(getattr(self, "action", None) or "")

    @classmethod
    def throttle_family_of(cls, action: str) -> str | None:
        """The rate-limit family ``action`` counts in (also read by api/direct.py, before any view exists)."""
        return cls.throttle_families.get(action, cls.throttle_family)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        state = getattr(request, "rate_limit", None)
        if state is not None:
            for name, value in state.headers().items():
                response[name] = value
        return response

    def required_permission(self) -> str | None:
        return self.permission_of(getattr(self, "action", None) or self.request.method.lower())

    @classmethod
    def permission_of(cls, action: str) -> str | None:
        """The permission ``action`` needs (also read by api/direct.py)."""
        return cls.permission_map.get(action) or cls.permission_map.get("*")

    @property
    def ctx(self):
        return self.request.auth

    @property
    def actor(self):
        return self.request.auth.actor


class TenantScopedViewSet(RoleMappedMixin, viewsets.GenericViewSet):
    """Scopes ``queryset`` with ``for_tenant``; another tenant's row is a 404.

    A super admin with no tenant in their token sees every tenant's rows and
    must name a tenant (obtain a token for it) to create tenant-owned rows.
    """

    not_found_error = NotFoundError

    def scope(self, queryset):
        """Apply the caller's tenant to any tenant-owned queryset."""
        if self.ctx.tenant is None and self.ctx.is_super_admin:
            return queryset
        return queryset.for_tenant(self.ctx.tenant)

    def get_queryset(self):
        return self.scope(super().get_queryset())

    def get_object(self):
        try:
            return super().get_object()
        except ApiError:
            raise  # already precise (e.g. INTEGRATION_NOT_FOUND for a parent that is not ours)
        except Exception as exc:  # Http404 and malformed ids alike
            if getattr(exc, "status_code", 404) == 404:
                raise self.not_found_error() from None
            raise

    def tenant_for_write(self):
        if self.ctx.tenant is None:
            raise ValidationFailed(
                "Obtain a token for a tenant to create objects in it.",
                details={"tenant": ["This action needs a tenant; the token is platform-wide."]},
            )
        return self.ctx.tenant


class ReadOnlyTenantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    pass
