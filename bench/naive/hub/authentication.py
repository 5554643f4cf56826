"""``X-API-Key: <key>``, looked up in the key table (as DRF's TokenAuthentication does)."""
from rest_framework import authentication, exceptions, permissions

from .models import ApiKey


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        key = request.headers.get("X-API-Key")
        if not key:
            return None
        try:
            api_key = ApiKey.objects.select_related("tenant").get(key=key)
        except ApiKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return None, api_key

    def authenticate_header(self, request):
        return "Api-Key"


class HasApiKey(permissions.BasePermission):
    def has_permission(self, request, view):
        return request.auth is not None
