from django import forms
from django.apps import apps
from django.contrib import admin
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.html import format_html

from integrations_site.admin import HubStyleMixin, SecretOnceAddMixin, ServiceAdminMixin, adopt, badge, staff_actor

from . import services
from .choices import POLICY_BOUNDS, POLICY_FIELDS
from .models import ApiKey, Membership, Tenant, TenantPolicy
from .selectors import policy_of


def tenant_owned_models() -> list:
    """Every model with a foreign key (or a one-to-one key) to Tenant: all of it goes when the tenant is deleted."""
    return [
        model for model in apps.get_models()
        if any(getattr(f, "related_model", None) is Tenant and (f.many_to_one or f.one_to_one)
               for f in model._meta.fields)
    ]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


class TenantPolicyForm(forms.ModelForm):
    """The tenant's own policy values. Each field's bounds are the model's validators (``POLICY_BOUNDS``, which
    the API's serializer checks too); an empty field is inherited. Each field says its effective value."""

    class Meta:
        model = TenantPolicy
        fields = POLICY_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        policy = policy_of(self.instance if self.instance.pk else None)
        for name in POLICY_FIELDS:
            field = self.fields[name]
            low, high = POLICY_BOUNDS[name]
            field.widget.attrs.update(min=low, max=high)  # a hint to the browser; the model's validators decide
            source = "the platform setting" if name in policy.inherited else "set here"
            field.help_text = format_html("{} <strong>Effective: {}</strong> ({}).", field.help_text,
                                          getattr(policy, name), source)


class TenantPolicyInline(admin.StackedInline):
    """The tenant's policy on its page; saved through ``tenant_policy_update`` (audited, as the API's PATCH)."""

    model = TenantPolicy
    form = TenantPolicyForm
    extra = 1
    max_num = 1
    can_delete = False  # emptying a field inherits it again; the row itself never needs deleting
    fieldsets = (
        ("Health", {"fields": ("health_failure_threshold", "health_latency_budget_ms",
                               "default_check_interval_seconds")}),
        ("Warning and auto-disable", {"fields": ("failure_warning_after", "auto_disable_after",
                                                 "auto_disable_min_hours")}),
        ("Defaults of new integrations", {"fields": ("default_timeout_seconds", "default_retry_count")}),
    )


@admin.register(Tenant)
class TenantAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "plan", "is_active", "member_count", "created_at")
    list_filter = ("plan", "is_active")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("id", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "plan", "is_active")}),
        ("OAuth", {"fields": ("allowed_return_hosts",)}),
        ("Record", {"fields": ("id", "created_at", "updated_at"), "classes": ("collapse",)}),
    )
    inlines = (TenantPolicyInline, MembershipInline)
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("memberships", distinct=True))

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj):
        return getattr(obj, "_members", None)

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in form.changed_data if name in services.TENANT_FIELDS}
        if change:
            saved = services.tenant_update(actor=staff_actor(request), tenant=obj, data=data)
        else:
            data = {name: form.cleaned_data[name] for name in services.TENANT_FIELDS if name in form.cleaned_data}
            saved = services.tenant_create(actor=staff_actor(request), data=data)
        adopt(obj, saved)

    def delete_model(self, request, obj):
        services.tenant_delete(actor=staff_actor(request), tenant=obj)

    def save_formset(self, request, form, formset, change):
        if formset.model is TenantPolicy:
            return self._save_policy(request, form, formset)
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        actor = staff_actor(request)
        memberships = formset.save(commit=False)
        for membership in formset.deleted_objects:
            services.membership_remove(actor=actor, membership=membership)
        for membership in memberships:
            services.membership_set(actor=actor, tenant=form.instance, user=membership.user, role=membership.role)

    def _save_policy(self, request, form, formset) -> None:
        # commit=False: the formset writes nothing itself, but knows what changed for the change message.
        formset.save(commit=False)
        for policy_form in formset.forms:
            if policy_form.has_changed():
                data = {name: policy_form.cleaned_data.get(name) for name in POLICY_FIELDS}
                services.tenant_policy_update(actor=staff_actor(request), tenant=form.instance, data=data)

    def delete_queryset(self, request, queryset):
        for tenant in queryset:
            services.tenant_delete(actor=staff_actor(request), tenant=tenant)

    def get_deleted_objects(self, objs, request):
        # Keys, credentials and history are never deleted one by one in the admin
        # (keys are revoked, records are kept), but they belong to the tenant and go with it.
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        exempt = {model._meta.verbose_name for model in tenant_owned_models()}
        return to_delete, model_count, perms_needed - exempt, protected


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role", "tenant")
    search_fields = ("user__username", "user__email", "tenant__name", "tenant__slug")
    list_select_related = ("user", "tenant")
    autocomplete_fields = ("user", "tenant")
    readonly_fields = ("created_at",)

    def get_readonly_fields(self, request, obj=None):
        # Moving a membership to another user or tenant is a remove and an add.
        return ("user", "tenant", "created_at") if obj else ("created_at",)

    def save_model(self, request, obj, form, change):
        saved = services.membership_set(actor=staff_actor(request), tenant=obj.tenant, user=obj.user, role=obj.role)
        adopt(obj, saved)

    def delete_model(self, request, obj):
        services.membership_remove(actor=staff_actor(request), membership=obj)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("user", "tenant"):
            services.membership_remove(actor=staff_actor(request), membership=membership)


class ApiKeyCreateForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("tenant", "name", "role", "expires_at")


class ApiKeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("usable", "Usable"), ("revoked", "Revoked"), ("expired", "Expired"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "usable":
            return queryset.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(HubStyleMixin, SecretOnceAddMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Keys are created through ``api_key_create`` (shown once) and revoked, never edited."""

    form = ApiKeyCreateForm
    list_display = ("name", "tenant", "role", "key_display", "state", "expires_at", "last_used_at", "created_at")
    list_filter = (ApiKeyStateFilter, "role", "tenant")
    search_fields = ("name", "prefix", "tenant__name", "tenant__slug")
    list_select_related = ("tenant",)
    autocomplete_fields = ("tenant",)
    date_hierarchy = "created_at"
    actions = ("revoke_selected",)
    service_object_kwarg = "api_key"
    view_fields = (
        "name", "tenant", "role", "key_display", "state", "expires_at", "revoked_at", "last_used_at",
        "created_by", "created_at",
    )

    def has_change_permission(self, request, obj=None):
        # An existing key is shown read-only; the only change is revoking it.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        return self.view_fields if obj is not None else ("tenant", "name", "role", "expires_at")

    def get_readonly_fields(self, request, obj=None):
        return self.view_fields if obj is not None else ()

    @admin.display(description="key")
    def key_display(self, obj):
        return format_html("<code>{}</code>", obj.display)

    @admin.display(description="state")
    def state(self, obj):
        if obj.is_revoked:
            return badge("revoked", "revoked", "neutral")
        return badge("expired", "expired", "warn") if obj.is_expired else badge("usable", "usable", "ok")

    def save_model(self, request, obj, form, change):
        api_key, raw = services.api_key_create(
            actor=staff_actor(request),
            tenant=form.cleaned_data["tenant"],
            name=form.cleaned_data["name"],
            role=form.cleaned_data["role"],
            expires_at=form.cleaned_data.get("expires_at"),
        )
        adopt(obj, api_key)
        request.secrets_once = [(f"{api_key.name} ({api_key.tenant.slug}, {api_key.role})", raw)]

    @admin.action(description="Revoke selected keys")
    def revoke_selected(self, request, queryset):
        self.run_per_object(request, queryset.select_related("tenant"), services.api_key_revoke, "Revoked")
