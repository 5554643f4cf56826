"""Integrations in the admin: the state first, config by group, stream read-only; lifecycle, test, poll,
restart-stream and try-search actions, and the "Test connection" and "Poll now" buttons."""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from integrations_site.admin import ObjectButtonsMixin, ServiceAdminMixin, adopt, object_button, staff_actor
from tenants.choices import plan_rank

from .. import adapters, services
from ..choices import UpdateMethod
from ..models import CONFIG_FIELDS, Integration
from ..selectors import has_tenant_credential
from ..services import checks, polling, queueing
from ..services import search as search_service
from ..services.statuses import PollError
from .badges import check_in_words
from .state import IntegrationStateAdminMixin
from .streams import IntegrationStreamAdminMixin
from .versions import ConfigVersionInline


class DeletedFilter(admin.SimpleListFilter):
    """Soft-deleted integrations are hidden unless asked for."""

    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("all", "All"))

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "No",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "all":
            return queryset
        return queryset.filter(deleted_at__isnull=True)


class IntegrationAdminForm(forms.ModelForm):
    class Meta:
        model = Integration
        fields = ("tenant", "provider", *CONFIG_FIELDS)

    def clean_settings(self):
        value = self.cleaned_data.get("settings")
        if isinstance(value, dict) and (problems := adapters.settings_problems(value)):
            tls = problems["tls"]
            raise forms.ValidationError(tls["ca_bundle"][0] if isinstance(tls, dict) else tls[0])
        return value

    def clean(self):
        # The services enforce these too; checking here keeps the staff member's input on the page.
        cleaned = super().clean()
        tenant = cleaned.get("tenant") or getattr(self.instance, "tenant", None)
        provider = cleaned.get("provider")
        if tenant and provider and self.instance._state.adding:
            needed = provider.minimum_plan
            if plan_rank(tenant.plan) < plan_rank(needed):
                self.add_error("provider", f"Needs the '{needed}' plan; {tenant} is on '{tenant.plan}'.")
        name = cleaned.get("name")
        if tenant and name:
            clash = Integration.objects.for_tenant(tenant).live().filter(name=name).exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error("name", "A live integration with this name already exists in the tenant.")
        return cleaned


class TrySearchForm(forms.Form):
    query = forms.CharField(max_length=256)
    entities = forms.CharField(required=False, max_length=1300, help_text="Comma-separated, optional.")
    limit = forms.IntegerField(min_value=1, max_value=50, initial=10, required=False)


def _pollable(integration) -> bool:
    return (not integration.is_deleted and bool(integration.status_endpoint)
            and integration.update_method == UpdateMethod.POLLING)


@admin.register(Integration)
class IntegrationAdmin(ObjectButtonsMixin, ServiceAdminMixin, IntegrationStateAdminMixin, IntegrationStreamAdminMixin,
                       admin.ModelAdmin):
    form = IntegrationAdminForm
    # The columns a staff member scans, narrow enough for a 1,280 px screen: failures in a row under the
    # health badge, the last error's code under the last check, a missing credential under the status.
    list_display = ("name", "tenant", "provider", "status_column", "health_column", "success_24h", "last_check")
    list_filter = (DeletedFilter, "status", "disabled_reason", "health_state", "environment", "provider", "tenant")
    search_fields = ("name", "description", "tenant__name", "tenant__slug", "provider__name", "provider__slug")
    list_select_related = ("tenant", "provider")
    autocomplete_fields = ("tenant", "provider")
    date_hierarchy = "created_at"
    inlines = (ConfigVersionInline,)
    actions = (
        "enable_selected", "disable_selected", "test_connection", "poll_statuses", "restart_stream", "try_search",
    )
    object_buttons = ("test_connection_button", "poll_now_button", "restart_stream_button")
    change_form_template = "admin/connections/integration/change_form.html"
    service_object_kwarg = "integration"
    config_groups = (
        (None, ("tenant", "provider", "name", "description", "environment")),
        ("Endpoints", ("api_base_url", "test_endpoint", "status_endpoint", "status_mapping")),
        ("Updates", (
            "update_method", "polling_interval_seconds", "timeout_seconds", "retry_count",
            "user_scoped", "search_enabled", "settings",
        )),
        ("Limits", ("limit_monthly_budget", "limit_tokens", "limit_requests_per_minute")),
    )

    def get_fieldsets(self, request, obj=None):
        grouped = {name for _, names in self.config_groups for name in names}
        # Config fields added later still appear, under "More settings".
        more = tuple(name for name in CONFIG_FIELDS if name not in grouped)
        fieldsets = [(title, {"fields": names}) for title, names in self.config_groups]
        if more:
            fieldsets.append(("More settings", {"fields": more}))
        if obj is None:
            return fieldsets
        # What a staff member opens the page for comes first: how the integration is doing.
        fieldsets.insert(0, ("State", {"fields": self.state_fields_of(obj)}))
        if stream := self.stream_fieldset(obj):
            fieldsets.append(stream)
        fieldsets.append(("Recent checks", {"fields": ("recent_checks",)}))
        fieldsets.append(("Schedule and record", {"fields": self.record_fields}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        # The owner of an existing integration never changes; status moves through the actions and buttons.
        if obj is None:
            return ()
        return (*self.state_fields, *self.record_fields, "tenant", "provider", "recent_checks", *self.stream_fields)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_has_credentials=has_tenant_credential())

    @object_button(label="Test connection", slug="test-connection", applies=lambda obj: not obj.is_deleted)
    def test_connection_button(self, request, obj):
        """Run the connection test now, as the API's POST …/test does; the outcome is also the State's last check."""
        check = checks.connection_test_run(integration=obj, actor=staff_actor(request))
        level = messages.SUCCESS if check.success else messages.ERROR
        self.message_user(request, format_html("Connection test: {}", check_in_words(check)), level)

    @object_button(label="Poll now", slug="poll-now", applies=_pollable)
    def poll_now_button(self, request, obj):
        """Poll the status endpoint now, as the API's POST …/poll does."""
        try:
            result = polling.status_poll(integration=obj, actor=staff_actor(request))
        except PollError as exc:
            self.message_user(request, format_html("Poll failed: <strong>{}</strong>: {}", exc.code, exc.message),
                              messages.ERROR)
            return
        unknown = ", ".join(f"{raw} ({count})" for raw, count in sorted(result.unknown.items()))
        self.message_user(
            request, f"Polled: {result.seen} seen, {result.changed} changed"
                     + (f", unknown raw statuses: {unknown}." if unknown else "."), messages.SUCCESS,
        )

    def save_model(self, request, obj, form, change):
        actor = staff_actor(request)
        data = {name: form.cleaned_data[name] for name in CONFIG_FIELDS if name in form.cleaned_data}
        if change:
            changed = {name: value for name, value in data.items() if name in form.changed_data}
            saved = services.integration_update(actor=actor, integration=obj, data=changed)
        else:
            saved = services.integration_create(
                actor=actor, tenant=form.cleaned_data["tenant"], provider=form.cleaned_data["provider"], data=data
            )
        adopt(obj, saved)

    def delete_model(self, request, obj):
        services.integration_delete(actor=staff_actor(request), integration=obj)

    def delete_queryset(self, request, queryset):
        self.run_per_object(request, queryset, services.integration_delete, "Deleted")

    def get_deleted_objects(self, objs, request):
        # Deleting is a soft delete: the row is hidden and its secrets erased; nothing cascades.
        objs = list(objs)
        opts = self.model._meta
        return [str(obj) for obj in objs], {opts.verbose_name_plural: len(objs)}, set(), []

    @admin.action(description="Enable selected integrations")
    def enable_selected(self, request, queryset):
        self.run_per_object(request, queryset, services.integration_enable, "Enabled")

    @admin.action(description="Disable selected integrations")
    def disable_selected(self, request, queryset):
        self.run_per_object(request, queryset, services.integration_disable, "Disabled")

    @admin.action(description="Test connection")
    def test_connection(self, request, queryset):
        """Queue a connection test per live integration; the worker runs them."""
        actor = staff_actor(request)
        live = [i for i in queryset.select_related("provider") if not i.is_deleted]
        for integration in live:
            queueing.connection_test_queue(integration=integration, actor=actor)
        self.message_user(request, f"Queued {len(live)} connection test(s).", messages.SUCCESS)
        self._report_deleted(request, queryset.count() - len(live))

    @admin.action(description="Poll statuses now")
    def poll_statuses(self, request, queryset):
        """Queue a status poll per live integration that has a status endpoint."""
        selected = list(queryset)
        pollable = [i for i in selected if not i.is_deleted and i.status_endpoint]
        for integration in pollable:
            queueing.status_poll_queue(integration=integration)
        self.message_user(request, f"Queued {len(pollable)} status poll(s).", messages.SUCCESS)
        missing = [str(i) for i in selected if not i.is_deleted and not i.status_endpoint]
        if missing:
            self.message_user(
                request, f"Not polled, no status endpoint: {', '.join(missing)}.", messages.WARNING
            )
        self._report_deleted(request, sum(1 for i in selected if i.is_deleted))

    @admin.action(description="Try search")
    def try_search(self, request, queryset):
        """Opens the search page of the one integration selected."""
        selected = list(queryset[:2])
        if len(selected) != 1:
            self.message_user(request, "Select one integration to try its search.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:connections_integration_try_search", args=[selected[0].pk]))

    def get_urls(self):
        try_search = path("<path:object_id>/try-search/", self.admin_site.admin_view(self.try_search_view),
                          name="connections_integration_try_search")
        return [try_search, *super().get_urls()]

    def try_search_view(self, request, object_id):
        """The integration's search, as a tenant's would ask it, with the answer mapped."""
        integration = self.get_object(request, object_id)
        if integration is None or integration.is_deleted:
            raise Http404("No such integration.")
        if not self.has_change_permission(request, integration):
            raise PermissionDenied
        form = TrySearchForm(request.GET or None)
        answer = None
        if form.is_valid():
            entities = [e.strip() for e in form.cleaned_data["entities"].split(",") if e.strip()]
            answer = search_service.search(
                tenant=integration.tenant_id, user=request.user, ids=[str(integration.pk)], grouped=False,
                request=search_service.SearchRequest(query=form.cleaned_data["query"], entities=entities,
                                                     limit=form.cleaned_data["limit"] or 10),
            )
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": integration,
            "title": f"Try search: {integration}", "form": form, "answer": answer,
            "errors": list(answer["errors"].values()) if answer else [],
        }
        return TemplateResponse(request, "admin/connections/integration/try_search.html", context)

    def _report_deleted(self, request, count: int) -> None:
        if count:
            self.message_user(request, f"Skipped {count} deleted integration(s).", messages.WARNING)
