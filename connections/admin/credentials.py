"""Credentials in the admin: type, hint, status and version; secrets are write-only, never shown."""
from django import forms
from django.contrib import admin, messages
from rest_framework.exceptions import ValidationError as DRFValidationError

from integrations_site.admin import HubStyleMixin, ServiceAdminMixin, adopt, error_message, staff_actor
from integrations_site.api.errors import ApiError

from .. import adapters, services
from ..models import Credential
from .badges import CREDENTIAL_BADGES


class CredentialAdminForm(forms.ModelForm):
    """One input per field of the credential's type; secret inputs never render a value.

    A blank secret input keeps the stored value; any change goes through
    ``credential_set``, which replaces the credential and bumps its version.
    """

    PREFIX = "field_"

    class Meta:
        model = Credential
        fields = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        credential = self.instance
        self.specs = (
            () if credential._state.adding else adapters.field_specs(credential.type, credential.integration.provider)
        )
        stored_public = credential.public_fields or {}
        for spec in self.specs:
            self.fields[self.PREFIX + spec.name] = self._form_field(spec, stored_public.get(spec.name))

    @staticmethod
    def _form_field(spec, stored):
        if spec.secret:
            return forms.CharField(
                label=f"{spec.name} (secret)",
                required=False,
                strip=False,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                help_text="Write-only: the stored value is never shown. Leave blank to keep it.",
            )
        if spec.kind == "string_list":
            return forms.CharField(
                label=spec.name, required=False, initial=" ".join(stored or []),
                help_text="Separated by spaces or commas.",
            )
        return forms.CharField(label=spec.name, required=False, initial=stored or "")

    def _entered(self) -> dict:
        """What the staff member typed: new secrets and the non-secret fields."""
        values = {}
        for spec in self.specs:
            value = self.cleaned_data.get(self.PREFIX + spec.name)
            if spec.secret:
                if value:
                    values[spec.name] = value
            elif spec.kind == "string_list":
                values[spec.name] = [v for v in value.replace(",", " ").split() if v]
            elif value:
                values[spec.name] = value
        return values

    def credential_data(self) -> dict | None:
        """The full data for ``credential_set``, or None when nothing changed."""
        if not any(name.startswith(self.PREFIX) for name in self.changed_data):
            return None
        entered = self._entered()
        stored = self.instance.payload or {}
        secret_names = {spec.name for spec in self.specs if spec.secret}
        # Stored secrets are carried over server-side for the inputs left blank.
        data = {name: value for name, value in stored.items() if name in secret_names}
        data.update(entered)
        return data

    def clean(self):
        cleaned = super().clean()
        data = self.credential_data()
        if data is not None:
            try:
                adapters.split_credential(self.instance.type, self.instance.integration.provider, data)
            except DRFValidationError as exc:
                for name, errors in exc.detail.items():
                    field = self.PREFIX + name if self.PREFIX + name in self.fields else None
                    self.add_error(field, [str(e) for e in errors])
        return cleaned


@admin.register(Credential)
class CredentialAdmin(HubStyleMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Type, hint, status and version; the payload is never displayed."""

    form = CredentialAdminForm
    list_display = ("integration", "tenant", "user", "type", "hint_display", "status_badge", "version", "updated_at")
    list_filter = ("type", "status", "tenant")
    search_fields = ("integration__name", "tenant__name", "tenant__slug", "user__username", "hint")
    list_select_related = ("integration", "tenant", "user")
    date_hierarchy = "updated_at"
    actions = ("erase_selected",)
    readonly_fields = (
        "integration", "tenant", "user", "type", "hint_display", "status_badge", "version", "public_fields",
        "expires_at", "last_validated_at", "validation_error", "created_at", "updated_at",
    )

    def get_fieldsets(self, request, obj=None):
        form_fields = [CredentialAdminForm.PREFIX + spec.name for spec in self._specs(obj)]
        return (
            (None, {"fields": ("integration", "tenant", "user", "type", "hint_display", "status_badge", "version")}),
            ("Replace the credential", {
                "fields": form_fields,
                "description": "Stored secrets are never shown. Enter a new value to replace one; "
                               "saving a change stores a new credential version.",
            }),
            ("Validation", {"fields": (
                "public_fields", "expires_at", "last_validated_at", "validation_error", "created_at", "updated_at",
            )}),
        )

    @staticmethod
    def _specs(obj):
        return adapters.field_specs(obj.type, obj.integration.provider) if obj is not None else ()

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The credential fields are added by the form itself, per type; skip the admin's field check.
        kwargs["fields"] = ()
        return super().get_form(request, obj, change=change, **kwargs)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("integration__provider", "tenant", "user")

    def has_add_permission(self, request):
        # A credential belongs to an integration and a type: it is set through the API.
        return False

    def has_delete_permission(self, request, obj=None):
        # Erasing keeps the row (type, version) for the record; see the action.
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return CREDENTIAL_BADGES(obj.status)

    @admin.display(description="hint")
    def hint_display(self, obj):
        return f"…{obj.hint}" if obj.hint else "—"

    def save_model(self, request, obj, form, change):
        data = form.credential_data()
        if data is None:
            return
        saved = services.credential_set(
            actor=staff_actor(request), integration=obj.integration, credential_type=obj.type, data=data,
            user=obj.user,
        )
        adopt(obj, saved)

    @admin.action(description="Erase the stored secrets of selected credentials")
    def erase_selected(self, request, queryset):
        actor = staff_actor(request)
        erased = 0
        for credential in queryset.select_related("integration", "user"):
            try:
                erased += services.credential_remove(
                    actor=actor, integration=credential.integration, user=credential.user
                )
            except ApiError as exc:
                self.message_user(request, f"{credential.integration}: {error_message(exc)}", messages.WARNING)
        self.message_user(request, f"Erased {erased} credential(s).", messages.SUCCESS)
