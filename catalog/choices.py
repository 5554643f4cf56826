from django.db import models


class Category(models.TextChoices):
    CRM = "crm", "CRM"
    COMMUNICATION = "communication", "Communication"
    DATA_SOURCE = "data_source", "Data source"
    STORAGE = "storage", "Storage"
    PAYMENT_GATEWAY = "payment_gateway", "Payment gateway"
    SMS_PROVIDER = "sms_provider", "SMS provider"
    EMAIL_PROVIDER = "email_provider", "Email provider"
    CUSTOM = "custom", "Custom"


class ProviderStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    BETA = "beta", "Beta"
    DEPRECATED = "deprecated", "Deprecated"
    DISABLED = "disabled", "Disabled"


class Audience(models.TextChoices):
    SYSTEM = "system", "System"
    TENANT = "tenant", "Tenant"


class AuthType(models.TextChoices):
    NONE = "none", "None"
    API_KEY = "api_key", "API key"
    BEARER = "bearer", "Bearer token"
    BASIC = "basic", "Basic auth"
    OAUTH2 = "oauth2", "OAuth 2.0"
    CUSTOM = "custom", "Custom"


class SyncDirection(models.TextChoices):
    INBOUND = "inbound", "Inbound"
    OUTBOUND = "outbound", "Outbound"
    BIDIRECTIONAL = "bidirectional", "Bidirectional"


class SignatureScheme(models.TextChoices):
    HMAC_SHA256 = "hmac_sha256", "HMAC-SHA256"
    STANDARD_WEBHOOKS = "standard_webhooks", "Standard Webhooks"
    STRIPE = "stripe", "Stripe"
    GITHUB = "github", "GitHub"
    SLACK = "slack", "Slack"
    SHOPIFY = "shopify", "Shopify"


TENANT_VISIBLE_STATUSES = (ProviderStatus.ACTIVE, ProviderStatus.BETA)


class CanonicalStatus(models.TextChoices):
    """The 7 canonical external statuses; unknown raw values map to ``unavailable``."""

    AVAILABLE = "available", "Available"
    RESERVED = "reserved", "Reserved"
    HOLD = "hold", "Hold"
    SOLD = "sold", "Sold"
    UNRELEASED = "unreleased", "Unreleased"
    UNAVAILABLE = "unavailable", "Unavailable"
    COMING_SOON = "coming_soon", "Coming soon"
