"""The role matrix (DESIGN.md): one map from permission to the roles that hold it.

Views name the permission each action needs (``permission_map``); nothing
else in the code decides who may do what.
"""
from rest_framework.permissions import BasePermission

from tenants.choices import SUPER_ADMIN, Role

TA, IM, MB = Role.TENANT_ADMIN.value, Role.INTEGRATION_MANAGER.value, Role.MEMBER.value
EVERYONE = frozenset({SUPER_ADMIN, TA, IM, MB})

MATRIX: dict[str, frozenset[str]] = {
    "catalog.manage": frozenset({SUPER_ADMIN}),
    "tenants.manage": frozenset({SUPER_ADMIN}),
    "audit.read_all": frozenset({SUPER_ADMIN}),
    "catalog.read": EVERYONE,
    "integrations.read": EVERYONE,
    "integrations.write": frozenset({SUPER_ADMIN, TA, IM}),
    "integrations.delete": frozenset({SUPER_ADMIN, TA}),
    "api_keys.manage": frozenset({SUPER_ADMIN, TA}),
    "tenant.read": EVERYONE,
    "tenant.update": frozenset({SUPER_ADMIN, TA}),
    "audit.read": frozenset({SUPER_ADMIN, TA, IM}),
    "user_connections.manage": frozenset({SUPER_ADMIN, TA}),
    "me.connect": EVERYONE,
}


def role_allows(role: str | None, permission: str) -> bool:
    return role is not None and role in MATRIX[permission]


class RolePermission(BasePermission):
    """Grants an action when the caller's role holds the permission the view names for it."""

    message = "Your role does not allow this action."

    def has_permission(self, request, view):
        ctx = getattr(request, "auth", None)
        role = getattr(ctx, "role", None)
        if role is None:
            return False
        if request.method.lower() not in getattr(view, "http_method_names", ()):
            return True  # a method the view turned off (e.g. PUT): DRF answers 405
        permission = view.required_permission() if hasattr(view, "required_permission") else None
        if permission is None:
            # A method the view does not serve: let DRF answer 405, not a misleading 403.
            return not hasattr(view, request.method.lower())
        return role_allows(role, permission)
