import uuid

from django.db import models

from integrations_site.crypto import EncryptedTextField
from tenants.choices import Plan

from . import validators
from .choices import TENANT_VISIBLE_STATUSES, Audience, AuthType, Category, ProviderStatus, SignatureScheme


class ProviderQuerySet(models.QuerySet):
    def tenant_catalog(self):
        """What tenants may browse and enable: tenant audience, active or beta."""
        return self.filter(audience=Audience.TENANT, status__in=TENANT_VISIBLE_STATUSES)


class IntegrationProvider(models.Model):
    """A kind of external system staff offer in the catalog. Read back by ``slug``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    display_name = models.CharField(max_length=160, blank=True)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=32, choices=Category.choices, default=Category.CUSTOM, db_index=True)
    status = models.CharField(
        max_length=16, choices=ProviderStatus.choices, default=ProviderStatus.ACTIVE, db_index=True
    )
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.TENANT, db_index=True)
    auth_type = models.CharField(max_length=16, choices=AuthType.choices, default=AuthType.API_KEY)
    capabilities = models.JSONField(default=list, blank=True, validators=[validators.validate_string_list])
    supported_sync_directions = models.JSONField(
        default=list, blank=True, validators=[validators.validate_string_list]
    )
    supports_webhooks = models.BooleanField(default=False)
    supports_polling = models.BooleanField(default=False)
    supports_search = models.BooleanField(default=False)
    supports_oauth = models.BooleanField(default=False)
    searchable_entities = models.JSONField(default=list, blank=True, validators=[validators.validate_string_list])
    available_entities = models.JSONField(default=list, blank=True, validators=[validators.validate_string_list])
    requires_user_scoping = models.BooleanField(default=False)
    search_config = models.JSONField(
        default=dict, blank=True, validators=[validators.validate_search_config],
        help_text="How the API searches: endpoint, method, query_param, limit_param, offset_param, entity_param, "
                  "items_path, total_path, fields {id, title, snippet, url, entity, updated_at, score} (dotted "
                  "paths into each item). Unset keys take the defaults.",
    )
    entity_config = models.JSONField(
        default=dict, blank=True, validators=[validators.validate_entity_config],
        help_text='Widget data per entity: {"Account": {"endpoint": "/accounts", "items_path": "data", '
                  '"total_path": "total", "fields": ["id", "name"], "filter_params": ["status"]}}.',
    )
    oauth_config = models.JSONField(
        default=dict, blank=True, validators=[validators.validate_oauth_config],
        help_text="authorize_url, token_url, revoke_url, client_id, scopes, pkce, issuer, token_auth_method.",
    )
    oauth_client_secret = EncryptedTextField(blank=True, default="")
    credential_fields = models.JSONField(
        default=list, blank=True, validators=[validators.validate_credential_fields],
        help_text='Fields of custom credentials: [{"name", "label", "secret", "required"}].',
    )
    default_api_base_url = models.URLField(blank=True, validators=[validators.validate_http_url])
    default_test_endpoint = models.CharField(max_length=500, blank=True, validators=[validators.validate_endpoint])
    default_status_endpoint = models.CharField(
        max_length=500, blank=True, validators=[validators.validate_endpoint]
    )
    default_status_mapping = models.JSONField(
        default=dict, blank=True, validators=[validators.validate_status_mapping]
    )
    default_webhook_signature_scheme = models.CharField(
        max_length=32, choices=SignatureScheme.choices, blank=True, default=""
    )
    icon = models.CharField(max_length=200, blank=True)
    color = models.CharField(max_length=16, blank=True)
    version = models.CharField(max_length=32, blank=True, default="1.0")
    documentation_url = models.URLField(blank=True)
    is_premium = models.BooleanField(default=False)
    required_plan = models.CharField(max_length=20, choices=Plan.choices, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProviderQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.display_name or self.name

    @property
    def has_oauth_client_secret(self) -> bool:
        return bool(self.oauth_client_secret)

    @property
    def minimum_plan(self) -> str:
        """The lowest plan allowed to enable this provider."""
        if self.required_plan:
            return self.required_plan
        return Plan.PRO if self.is_premium else Plan.FREE
