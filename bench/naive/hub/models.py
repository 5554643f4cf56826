"""Tables shaped like ours (tenants.Tenant, catalog.IntegrationProvider, connections.Integration,
webhooks.WebhookEndpoint/WebhookEvent), with the textbook defaults: Django's FK indexes, no
composite index, no soft delete, secrets in plain text (as DRF's authtoken keeps its tokens)."""
import uuid

from django.db import models


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)


class Provider(models.Model):
    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    display_name = models.CharField(max_length=200)


class ApiKey(models.Model):
    key = models.CharField(max_length=64, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=120)
    created_at = models.DateTimeField(auto_now_add=True)


class Integration(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="integrations")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="integrations")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    environment = models.CharField(max_length=16, default="production")
    status = models.CharField(max_length=16, default="pending", db_index=True)
    health_state = models.CharField(max_length=16, default="unknown")
    health_checked_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_success_at = models.DateTimeField(null=True, blank=True)
    api_base_url = models.URLField(max_length=500, blank=True)
    test_endpoint = models.CharField(max_length=500, blank=True)
    status_endpoint = models.CharField(max_length=500, blank=True)
    status_mapping = models.JSONField(default=dict, blank=True)
    update_method = models.CharField(max_length=16, default="polling")
    polling_interval_seconds = models.PositiveIntegerField(default=60)
    timeout_seconds = models.PositiveIntegerField(default=10)
    retry_count = models.PositiveIntegerField(default=3)
    settings = models.JSONField(default=dict, blank=True)
    user_scoped = models.BooleanField(default=False)
    search_enabled = models.BooleanField(default=False)
    limit_monthly_budget = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    limit_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    limit_requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    path = models.SlugField(max_length=100, unique=True)
    secret = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)


class WebhookEvent(models.Model):
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="events")
    delivery_id = models.CharField(max_length=255)
    body = models.BinaryField()
    headers = models.JSONField(default=dict)
    status = models.CharField(max_length=16, default="pending")
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "delivery_id"], name="hub_event_delivery")]
