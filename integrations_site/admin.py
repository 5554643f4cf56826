"""Pieces shared by the apps' ModelAdmins.

Staff changes go through the same services as the API, so they are validated
and audited the same way; these helpers keep each admin class thin.
"""
import json

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.html import format_html

from audit.services import Actor
from integrations_site.api.errors import ApiError

admin.site.site_header = "Integrations hub"
admin.site.site_title = "Integrations hub admin"
admin.site.index_title = "Operations"


def staff_actor(request) -> Actor:
    """The audit actor for a staff request."""
    return Actor(user=request.user)


def error_message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


def adopt(obj, saved) -> None:
    """Make the admin's unsaved ``obj`` the row a service just created.

    The admin keeps using its own instance after ``save_model`` (inlines,
    the change log, the redirect), so it must carry the new primary key.
    """
    obj.pk = saved.pk
    obj.refresh_from_db()
    obj._state.adding = False
    obj._state.db = saved._state.db


def json_block(value) -> str:
    """``value`` as indented JSON in a <pre> block, escaped."""
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the services and tasks: staff read them, never add, edit or delete them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ServiceAdminMixin:
    """Turn a service's refusal (an ``ApiError``) into an admin message.

    Forms check what they can up front; a refusal only the service can make
    (a race, a rule checked under lock) rolls the save back and says why
    instead of answering 500.
    """

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApiError as exc:
            self.message_user(request, f"Not saved: {error_message(exc)}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ApiError as exc:
            self.message_user(request, f"Not deleted: {error_message(exc)}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def run_per_object(self, request, queryset, service, verb: str, **kwargs) -> None:
        """Call ``service(actor=..., <kwarg>=obj)`` for each selected row and report the outcome."""
        actor = staff_actor(request)
        done, failed = 0, []
        for obj in queryset:
            try:
                service(actor=actor, **{self.service_object_kwarg: obj}, **kwargs)
                done += 1
            except ApiError as exc:
                failed.append(f"{obj}: {error_message(exc)}")
        if done:
            self.message_user(request, f"{verb} {done} {self._noun(done)}.", messages.SUCCESS)
        for line in failed:
            self.message_user(request, line, messages.WARNING)

    service_object_kwarg = "obj"

    def _noun(self, count: int) -> str:
        opts = self.model._meta
        return opts.verbose_name if count == 1 else opts.verbose_name_plural


def secret_once_response(request, *, title: str, items: list[tuple[str, str]], back_url: str, note: str = ""):
    """A page that shows freshly made secrets once: never stored in messages or cookies, never cached."""
    from django.template.response import TemplateResponse

    response = TemplateResponse(
        request, "admin/secret_once.html",
        {**admin.site.each_context(request), "title": title, "items": items, "back_url": back_url, "note": note},
    )
    response["Cache-Control"] = "no-store"
    return response


class SecretOnceAddMixin:
    """For admins whose add creates a secret: ``save_model`` sets ``request.secrets_once``,
    and the answer to the add is the page that shows them once."""

    def response_add(self, request, obj, post_url_continue=None):
        items = getattr(request, "secrets_once", None)
        if not items:
            return super().response_add(request, obj, post_url_continue)
        opts = self.model._meta
        from django.urls import reverse

        return secret_once_response(
            request, title=f"{opts.verbose_name.capitalize()} created", items=items,
            back_url=reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        )
