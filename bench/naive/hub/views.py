"""The textbook views: a JsonResponse health check, a DRF ModelViewSet scoped to the caller's
tenant, and a webhook view that verifies a GitHub-style signature and queues one task per event.

The viewset reads the provider with ``select_related`` (DRF's docs advise it; without it a page of
50 would be 52 queries and the comparison would be about an N+1, not the framework). Queries: the
API key (with its tenant), then COUNT and the page for a list, the row for a detail. The webhook:
the endpoint, the insert (a duplicate delivery id is the unique constraint's IntegrityError), and one
``delay()`` (a broker round trip) per event.
"""
import hashlib
import hmac
import json
import time
import urllib.parse
import urllib.request

from django.db import IntegrityError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework import viewsets
from rest_framework.decorators import api_view
from rest_framework.response import Response

from .models import Integration, WebhookEndpoint, WebhookEvent
from .serializers import IntegrationSerializer
from .tasks import process_event


def healthz(request):
    return JsonResponse({"status": "ok"})


class IntegrationViewSet(viewsets.ModelViewSet):
    serializer_class = IntegrationSerializer

    def get_queryset(self):
        return Integration.objects.filter(tenant=self.request.auth.tenant).select_related("provider")

    def perform_create(self, serializer):
        serializer.save(tenant=self.request.auth.tenant)


@csrf_exempt
@require_POST
def webhook(request, path):
    endpoint = get_object_or_404(WebhookEndpoint, path=path)
    expected = "sha256=" + hmac.new(endpoint.secret.encode(), request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
        return JsonResponse({"error": "invalid signature"}, status=401)
    try:
        event = WebhookEvent.objects.create(
            endpoint=endpoint, delivery_id=request.headers.get("X-GitHub-Delivery", ""), body=request.body,
            headers=dict(request.headers),
        )
    except IntegrityError:  # the (endpoint, delivery_id) constraint: GitHub sent this delivery before
        return JsonResponse({"status": "duplicate"}, status=200)
    process_event.delay(event.id)
    return JsonResponse({"status": "accepted", "event_id": event.id}, status=202)


@api_view(["POST"])
def search(request):
    """The obvious search: each of the tenant's searchable integrations asked in turn (urllib), the items
    gathered, sorted by score. Upstream failures are skipped."""
    started, results = time.monotonic(), []
    query = urllib.parse.urlencode({"q": request.data.get("query", ""), "limit": 10})
    for integration in Integration.objects.filter(tenant=request.auth.tenant, search_enabled=True):
        try:
            with urllib.request.urlopen(f"{integration.api_base_url}/search?{query}",
                                        timeout=integration.timeout_seconds) as answer:
                items = json.load(answer).get("results", [])
        except (OSError, ValueError):
            continue
        results += [{**item, "integration_id": str(integration.pk)} for item in items]
    results.sort(key=lambda item: -(item.get("score") or 0))
    return Response({"results": results, "total": len(results), "took": int((time.monotonic() - started) * 1000)})
