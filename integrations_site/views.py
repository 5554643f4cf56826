"""Operational endpoints."""
from django.http import JsonResponse

from .api.errors import envelope


def healthz(request):
    """Liveness: the process answers."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(envelope("METHOD_NOT_ALLOWED", f'Method "{request.method}" not allowed.'), status=405)
        response["Allow"] = "GET, HEAD"
        return response
    return JsonResponse({"status": "ok"})
