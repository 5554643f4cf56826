"""The one error envelope: {"error": {"code", "message", "details", "request_id"}}.

DRF exceptions go through ``exception_handler``; Django's own 400/403/404/500
go through the ``handler*`` views wired in ``integrations_site.urls``.
"""
import logging

from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response

from .middleware import current_request_id

logger = logging.getLogger("integrations_site.api")


class ApiError(exceptions.APIException):
    """An error with a contract code; raise it from views and services."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "VALIDATION_ERROR"
    default_detail = "The request is not valid."

    def __init__(self, message: str | None = None, *, details: dict | None = None, code: str | None = None):
        super().__init__(message or self.default_detail)
        self.message = message or str(self.default_detail)
        self.details = details or {}
        if code:
            self.code = code


class ValidationFailed(ApiError):
    code = "VALIDATION_ERROR"


class NotFoundError(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "NOT_FOUND"
    default_detail = "Not found."


class ProviderNotFound(NotFoundError):
    code = "PROVIDER_NOT_FOUND"
    default_detail = "Provider not found."


class IntegrationNotFound(NotFoundError):
    code = "INTEGRATION_NOT_FOUND"
    default_detail = "Integration not found."


class ConflictError(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "CONFLICT"
    default_detail = "The request conflicts with the current state."


class PermissionDeniedError(ApiError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "PERMISSION_DENIED"
    default_detail = "You do not have permission to perform this action."


class UrlNotAllowed(ApiError):
    code = "URL_NOT_ALLOWED"
    default_detail = "That URL is not allowed."


class UpstreamFailed(ApiError):
    """The integration's API did not give a usable answer: 502, ``CONNECTION_FAILED`` or ``INVALID_CREDENTIALS``."""

    status_code = status.HTTP_502_BAD_GATEWAY
    code = "CONNECTION_FAILED"


class LimitExceeded(ApiError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "LIMIT_EXCEEDED"
    default_detail = "A usage limit was reached."


def envelope(code: str, message: str, details: dict | None = None) -> dict:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or {},
            "request_id": current_request_id(),
        }
    }


def _validation_details(detail) -> dict:
    if isinstance(detail, dict):
        return detail
    if isinstance(detail, list):
        return {"non_field_errors": detail}
    return {"non_field_errors": [detail]}


def _first_message(details: dict) -> str:
    for field, errors in details.items():
        first = errors[0] if isinstance(errors, list) and errors else errors
        if isinstance(first, dict):
            return f"{field}: {_first_message(first)}"
        label = "" if field == "non_field_errors" else f"{field}: "
        return f"{label}{first}"
    return "The request is not valid."


def exception_handler(exc, context):
    view = context.get("view")
    headers = {}
    if isinstance(exc, Http404):
        exc = getattr(view, "not_found_error", NotFoundError)()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = PermissionDeniedError()
    elif isinstance(exc, DjangoValidationError):
        # Model validation (full_clean) raised from a service.
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)

    if isinstance(exc, exceptions.NotFound) and not isinstance(exc, ApiError):
        exc = getattr(view, "not_found_error", NotFoundError)()

    if isinstance(exc, ApiError):
        body = envelope(exc.code, exc.message, exc.details)
        status_code = exc.status_code
    elif isinstance(exc, exceptions.ValidationError):
        details = _validation_details(exc.detail)
        body = envelope("VALIDATION_ERROR", _first_message(details), details)
        status_code = 400
    elif isinstance(exc, exceptions.ParseError):
        body = envelope("VALIDATION_ERROR", f"Malformed request body: {exc.detail}")
        status_code = 400
    elif isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        # simplejwt's InvalidToken carries a dict detail ({"detail", "code", "messages"}).
        detail = exc.detail.get("detail", "Invalid token.") if isinstance(exc.detail, dict) else exc.detail
        body = envelope("NOT_AUTHENTICATED", str(detail))
        status_code = exc.status_code
    elif isinstance(exc, exceptions.PermissionDenied):
        body = envelope("PERMISSION_DENIED", str(exc.detail))
        status_code = 403
    elif isinstance(exc, exceptions.MethodNotAllowed):
        body = envelope("METHOD_NOT_ALLOWED", str(exc.detail))
        status_code = 405
    elif isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        body = envelope("RATE_LIMIT_EXCEEDED", "Too many requests.", {"retry_after": wait})
        headers["Retry-After"] = str(wait)
        status_code = 429
    elif isinstance(exc, exceptions.APIException):
        body = envelope("VALIDATION_ERROR", str(exc.detail))
        status_code = exc.status_code
    else:
        logger.exception("api.unhandled_error view=%s", type(view).__name__ if view else "-")
        body = envelope("INTERNAL_ERROR", "An internal error occurred.")
        status_code = 500

    if isinstance(exc, exceptions.APIException):
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        if getattr(exc, "wait", None) and "Retry-After" not in headers:
            headers["Retry-After"] = str(int(exc.wait))
    return Response(body, status=status_code, headers=headers)


def _json_error(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(envelope(code, message), status=status_code)


def _is_html_path(request) -> bool:
    return request.path.startswith("/admin/")


def handler400(request, exception=None):
    if _is_html_path(request):
        from django.views.defaults import bad_request

        return bad_request(request, exception)
    return _json_error(400, "VALIDATION_ERROR", "Bad request.")


def handler403(request, exception=None):
    if _is_html_path(request):
        from django.views.defaults import permission_denied

        return permission_denied(request, exception)
    return _json_error(403, "PERMISSION_DENIED", "Permission denied.")


def handler404(request, exception=None):
    if _is_html_path(request):
        from django.views.defaults import page_not_found

        return page_not_found(request, exception)
    return _json_error(404, "NOT_FOUND", "Not found.")


def handler500(request):
    if _is_html_path(request):
        from django.views.defaults import server_error

        return server_error(request)
    return _json_error(500, "INTERNAL_ERROR", "An internal error occurred.")


@csrf_exempt
def api_not_found(request, *args, **kwargs):
    """Catch-all under /api/ so unknown API paths get the envelope even with DEBUG on.

    CSRF-exempt like every DRF view: otherwise an unsafe method on an unknown
    path would be answered by Django's HTML CSRF page instead of this 404.
    """
    return _json_error(404, "NOT_FOUND", "Not found.")


# Paths whose clients read JSON: an unhandled error is answered with the envelope even when DEBUG
# shows Django's HTML page elsewhere (the admin, the landing page).
JSON_PATH_PREFIXES = ("/api/", "/hooks/", "/healthz", "/readyz", "/metrics")
# What Django answers as a 4xx by itself (through the handler views above).
_CLIENT_ERRORS = (Http404, DjangoPermissionDenied, BadRequest, SuspiciousOperation)


class JsonErrorMiddleware:
    """A view's unhandled exception on a JSON path becomes a 500 in the error envelope.

    Without DEBUG, ``handler500`` does the same; with DEBUG, Django would
    answer its HTML debug page instead. The traceback goes to the log either way.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, _CLIENT_ERRORS) or not request.path.startswith(JSON_PATH_PREFIXES):
            return None
        logger.error("api.unhandled_error path=%s", request.path,
                     exc_info=(type(exception), exception, exception.__traceback__))
        return _json_error(500, "INTERNAL_ERROR", "An internal error occurred.")
