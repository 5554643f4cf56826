from django import forms
from django.contrib import admin

from integrations_site.admin import ChoiceBadges, HubStyleMixin, ServiceAdminMixin, adopt, staff_actor

from . import services
from .choices import ProviderStatus
from .models import IntegrationProvider

SECRET_HELP = "Write-only: the stored value is never shown. Leave blank to keep it."
PROVIDER_STATUS_BADGES = ChoiceBadges(ProviderStatus, {
    ProviderStatus.ACTIVE: "ok", ProviderStatus.BETA: "info", ProviderStatus.DEPRECATED: "warn",
    ProviderStatus.DISABLED: "neutral",
})


class ProviderAdminForm(forms.ModelForm):
    """The OAuth client secret can be replaced or cleared, never read back."""

    new_oauth_client_secret = forms.CharField(
        label="New OAuth client secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=SECRET_HELP,
    )
    clear_oauth_client_secret = forms.BooleanField(label="Remove the stored client secret", required=False)

    class Meta:
        model = IntegrationProvider
        exclude = ("oauth_client_secret",)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("new_oauth_client_secret") and cleaned.get("clear_oauth_client_secret"):
            raise forms.ValidationError("Either enter a new client secret or remove the stored one, not both.")
        return cleaned

    def secret_change(self) -> dict:
        """``{"oauth_client_secret": ...}`` when the staff member asked for a change, else ``{}``."""
        if self.cleaned_data.get("new_oauth_client_secret"):
            return {"oauth_client_secret": self.cleaned_data["new_oauth_client_secret"]}
        if self.cleaned_data.get("clear_oauth_client_secret"):
            return {"oauth_client_secret": ""}
        return {}


def _status_action(status: str):
    def action(modeladmin, request, queryset):
        modeladmin.run_per_object(request, queryset, services.provider_set_status, f"Set to {status}:", status=status)

    action.__name__ = f"mark_{status}"
    return admin.action(description=f"Mark selected providers as {ProviderStatus(status).label.lower()}")(action)


@admin.register(IntegrationProvider)
class IntegrationProviderAdmin(HubStyleMixin, ServiceAdminMixin, admin.ModelAdmin):
    form = ProviderAdminForm
    list_display = ("name", "slug", "category", "status_badge", "audience", "auth_type", "is_premium")
    list_filter = ("status", "category", "audience", "auth_type", "is_premium", "required_plan", "supports_webhooks")
    search_fields = ("name", "display_name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("has_client_secret", "id", "created_at", "updated_at")
    date_hierarchy = "created_at"
    service_object_kwarg = "provider"
    actions = [_status_action(s) for s in ProviderStatus.values]
    fieldsets = (
        ("Identity", {"fields": (
            "name", "display_name", "slug", "description", "icon", "color", "version", "documentation_url",
        )}),
        ("Availability", {"fields": ("status", "audience", "is_premium", "required_plan")}),
        ("Authentication", {"fields": (
            "auth_type", "credential_fields", "supports_oauth", "oauth_config",
            "has_client_secret", "new_oauth_client_secret", "clear_oauth_client_secret",
        )}),
        ("Capabilities", {"fields": (
            "capabilities", "supported_sync_directions", "supports_webhooks", "supports_polling",
            "supports_search", "searchable_entities", "available_entities", "requires_user_scoping",
        )}),
        ("Search and widget data", {"fields": ("search_config", "entity_config")}),
        ("Connection defaults", {"fields": (
            "default_api_base_url", "default_test_endpoint", "default_status_endpoint",
            "default_status_mapping", "default_webhook_signature_scheme",
        )}),
        ("Record", {"fields": ("id", "created_at", "updated_at"), "classes": ("collapse",)}),
    )

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return PROVIDER_STATUS_BADGES(obj.status)

    @admin.display(description="OAuth client secret", boolean=True)
    def has_client_secret(self, obj):
        return obj.has_oauth_client_secret if obj and obj.pk else False

    def save_model(self, request, obj, form, change):
        model_fields = {f.name for f in IntegrationProvider._meta.concrete_fields}
        actor = staff_actor(request)
        if change:
            data = {name: form.cleaned_data[name] for name in form.changed_data if name in model_fields}
            data.update(form.secret_change())
            saved = services.provider_update(actor=actor, provider=obj, data=data)
        else:
            data = {
                name: value for name, value in form.cleaned_data.items()
                if name in model_fields and name not in ("id", "created_at", "updated_at")
            }
            data.update(form.secret_change())
            saved = services.provider_create(actor=actor, data=data)
        adopt(obj, saved)

    def get_deleted_objects(self, objs, request):
        # provider_delete decides what goes with a provider, not the foreign keys pointing at it;
        # an app whose rows keep a provider from a delete lists them by extending this admin.
        objs = list(objs)
        opts = self.model._meta
        return [str(obj) for obj in objs], {opts.verbose_name_plural: len(objs)}, set(), []

    def delete_model(self, request, obj):
        services.provider_delete(actor=staff_actor(request), provider=obj)

    def delete_queryset(self, request, queryset):
        for provider in queryset:
            services.provider_delete(actor=staff_actor(request), provider=provider)
