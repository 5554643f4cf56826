"""The public receiver: ``POST /hooks/{path}``.

Plain Django on purpose (no DRF, no session or auth work): one indexed
lookup, signature check on the raw bytes, one INSERT committed before the
answer, and a batched hand-off to the queue.
"""
import logging
import re

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from connections import usage
from integrations_site.api.errors import envelope

from . import handoff, services, signatures
from .choices import PATH_CHARS
from .models import WebhookEndpoint

logger = logging.getLogger("webhooks")
_PATH = re.compile(PATH_CHARS)


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JsonResponse:
    response = JsonResponse(envelope(code, message), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _read_body(request, limit: int) -> bytes:
    """At most ``limit`` bytes of the body.

    Django reads nothing when there is no Content-Length; a chunked body is
    still there when the server ends the stream itself (gunicorn decodes the
    chunks and sets ``wsgi.input_terminated``), so it is read from the stream.
    """
    meta = request.META
    if meta.get("CONTENT_LENGTH") or not meta.get("wsgi.input_terminated"):
        return request.read(limit)
    stream, parts, size = meta["wsgi.input"], [], 0
    while size < limit:
        chunk = stream.read(min(65536, limit - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _refusal(endpoint: WebhookEndpoint, headers: dict, body: bytes) -> signatures.SignatureError | None:
    try:
        signatures.verify(
            endpoint.signature_scheme, secrets=endpoint.verifying_secrets(), headers=headers, body=body,
            tolerance=endpoint.tolerance_seconds, signature_header=endpoint.signature_header,
        )
    except signatures.SignatureError as exc:
        return exc
    return None


@csrf_exempt
def receive(request, path: str):
    if request.method != "POST":
        response = _error(405, "METHOD_NOT_ALLOWED", f'Method "{request.method}" not allowed.')
        response["Allow"] = "POST"
        return response
    # A path no endpoint can have (NUL, other bytes, too long) is answered before any lookup.
    endpoint = services.endpoint_for_path(path) if _PATH.fullmatch(path) else None
    if endpoint is None:
        return _error(404, "NOT_FOUND", "No webhook endpoint at this path.")

    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared and not (declared.isascii() and declared.isdigit()):
        # Django would read such a body as empty, and an empty body is a valid delivery.
        return _error(400, "VALIDATION_ERROR", "The Content-Length header is not a number.")
    if declared and int(declared) > endpoint.max_body_bytes:
        logger.info("webhooks.event.rejected endpoint=%s reason=too_large", endpoint.pk)
        return _error(413, "PAYLOAD_TOO_LARGE", f"The body is larger than {endpoint.max_body_bytes} bytes.")

    wait = services.rate_limit_wait(endpoint)
    if wait is not None:
        logger.info("webhooks.event.rejected endpoint=%s reason=rate_limited", endpoint.pk)
        return _error(429, "RATE_LIMIT_EXCEEDED", "Too many deliveries to this endpoint.", {"Retry-After": str(wait)})

    body = _read_body(request, endpoint.max_body_bytes + 1)
    if len(body) > endpoint.max_body_bytes:
        return _error(413, "PAYLOAD_TOO_LARGE", f"The body is larger than {endpoint.max_body_bytes} bytes.")

    headers = {k.lower(): v for k, v in request.headers.items()}
    if endpoint.verify_signature:
        refused = _refusal(endpoint, headers, body)
        if refused is not None and settings.WEBHOOK_ENDPOINT_CACHE_SECONDS:
            # The endpoint may be a cached copy from before a change made in another process
            # (a rotated secret): check once more against the stored row before refusing.
            endpoint = services.endpoint_for_path(path, fresh=True)
            if endpoint is None:
                return _error(404, "NOT_FOUND", "No webhook endpoint at this path.")
            refused = _refusal(endpoint, headers, body)
        if refused is not None:
            services.signature_failure_count(endpoint=endpoint)
            logger.info("webhooks.event.rejected endpoint=%s reason=signature detail=%s", endpoint.pk, refused.reason)
            return _error(401, "SIGNATURE_INVALID", f"The signature was refused: {refused.reason}.")
    # Whatever the body, empty included: only a refused signature (or the size or rate limit) turns a delivery away.

    dedupe_key = signatures.dedupe_key(endpoint.signature_scheme, headers, body) if endpoint.dedupe else None
    event, created = services.event_accept(
        endpoint=endpoint, body=body, headers=headers, content_type=request.content_type or "",
        source_ip=request.META.get("REMOTE_ADDR") or None, dedupe_key=dedupe_key,
    )
    if not created:
        return JsonResponse({"status": "duplicate", "event_id": str(event.pk)}, status=200)
    handoff.hand_off(str(event.pk))
    usage.record(endpoint.integration_id, endpoint.tenant_id, webhooks=1)
    return JsonResponse({"status": "accepted", "event_id": str(event.pk)}, status=202)
