"""The public receiver: ``POST /hooks/{path}``.

Plain Django on purpose (no DRF, no session or auth work): the view adapts
the request to ``services.webhook_receive`` (one indexed lookup, signature
check on the raw bytes, one INSERT committed before the answer, a batched
hand-off to the queue) and its receipt to a response.
"""
from django.http import JsonResponse
from django.http.request import HttpHeaders
from django.views.decorators.csrf import csrf_exempt

from integrations_site.api.errors import envelope

from . import services


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


def _lower_case_headers(meta: dict) -> dict:
    """``{name.lower(): value for name, value in request.headers.items()}`` in one pass over META, by Django's
    own rule for which keys are headers (``HttpHeaders.parse_header_name``), without building the
    case-insensitive mapping ``request.headers`` is first."""
    headers = {}
    for key, value in meta.items():
        name = HttpHeaders.parse_header_name(key)
        if name is not None:
            headers[name.lower()] = value
    return headers


@csrf_exempt
def receive(request, path: str):
    if request.method != "POST":
        response = JsonResponse(envelope("METHOD_NOT_ALLOWED", f'Method "{request.method}" not allowed.'), status=405)
        response["Allow"] = "POST"
        return response
    receipt = services.webhook_receive(
        path=path, content_length=request.META.get("CONTENT_LENGTH") or "",
        read_body=lambda limit: _read_body(request, limit),
        headers=_lower_case_headers(request.META), content_type=request.content_type or "",
        source_ip=request.META.get("REMOTE_ADDR") or None,
    )
    response = JsonResponse(receipt.body, status=receipt.status)
    for name, value in receipt.headers.items():
        response[name] = value
    return response
