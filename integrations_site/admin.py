"""Pieces shared by the apps' ModelAdmins.

Staff changes go through the same services as the API, so they are validated
and audited the same way; these helpers keep each admin class thin.
"""
import json
from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import models
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

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


# The admin's own stylesheet (badges, object buttons), served by whitenoise from this package's static files.
HUB_CSS = "admin/hub.css"
TONES = ("ok", "warn", "bad", "info", "neutral")


def badge(value, label, tone: str) -> SafeString:
    """A coloured pill that carries its text: the words say the state, the colour only repeats it."""
    if tone not in TONES:
        raise ValueError(f"unknown badge tone {tone!r}")
    return format_html('<span class="hub-badge hub-badge--{}" data-value="{}">{}</span>', tone, value, label)


class ChoiceBadges:
    """The badge of each value of one choice set, e.g. ``HEALTH_BADGES(integration.health_state)``.

    Every choice must have a tone, checked when the module loads, so a choice added later fails
    loudly instead of rendering without a colour; a value outside the choices shows as itself.
    """

    def __init__(self, choices: type[models.Choices], tones: dict[str, str]):
        if missing := sorted(set(choices.values) - set(tones)):
            raise ImproperlyConfigured(f"{choices.__name__}: no badge tone for {', '.join(missing)}")
        self.labels = dict(choices.choices)
        self.tones = tones

    def __call__(self, value) -> SafeString | str:
        if value in (None, ""):
            return "—"
        return badge(value, self.labels.get(value, value), self.tones.get(value, "neutral"))


def ago(at, depth: int = 2) -> str:
    """How long ago ``at`` was, in words ("1 hour, 3 minutes ago"; ``depth=1``: "1 hour ago"); "—" for never."""
    return f"{timesince(at, depth=depth)} ago" if at else "—"


def error_in_words(error: dict | None) -> str:
    """A stored ``{"code", "message", "at"}`` error as a person reads it: code, message and how long ago."""
    if not error:
        return "—"
    at = error.get("at")
    at = parse_datetime(at) if isinstance(at, str) else at
    when = format_html(" ({})", ago(at)) if at else ""
    return format_html("<strong>{}</strong>: {}{}", error.get("code") or "ERROR", error.get("message") or "", when)


class HubStyleMixin:
    """Loads ``HUB_CSS`` on the lists and pages of an admin that shows badges."""

    class Media:
        css = {"all": (HUB_CSS,)}


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
        return secret_once_response(
            request, title=f"{opts.verbose_name.capitalize()} created", items=items,
            back_url=reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        )


def object_button(*, label: str, slug: str, applies: Callable[[object], bool] | None = None):
    """Mark a ModelAdmin method ``(request, obj) -> HttpResponse | None`` as a button on the change page.

    It answers POST ``<object_id>/<slug>/`` (URL name ``<app>_<model>_<slug with underscores>``);
    ``applies(obj)`` says where the button is shown and a POST accepted. List the method's name in
    the admin's ``object_buttons``.
    """
    def decorate(method):
        method.button_label = label
        method.button_slug = slug
        method.button_applies = applies or (lambda obj: True)
        return method
    return decorate


class ObjectButtonsMixin(HubStyleMixin):
    """Buttons on an object's change page, each a POST form (with CSRF) to ``<object_id>/<slug>/``.

    Shown only where the button applies and to staff with the model's change permission (checked
    on the permission itself, so a read-only admin can still offer one); a GET is 405, a staff
    member without the permission gets 403. The handler calls a service, which audits; its answer
    is the response, or else the change page again with the handler's messages. A service's
    refusal (``ApiError``) becomes an error message.
    """

    object_buttons: tuple[str, ...] = ()
    change_form_template = "admin/change_form_with_buttons.html"

    def get_urls(self):
        buttons = [
            path(f"<path:object_id>/{getattr(self, name).button_slug}/",
                 self.admin_site.admin_view(self._button_view(name)), name=self._button_url_name(name))
            for name in self.object_buttons
        ]
        return [*buttons, *super().get_urls()]

    def _button_url_name(self, name: str) -> str:
        opts = self.model._meta
        return f"{opts.app_label}_{opts.model_name}_{getattr(self, name).button_slug.replace('-', '_')}"

    def has_button_permission(self, request, obj) -> bool:
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")

    def buttons_for(self, request, obj) -> list[dict]:
        """The buttons to show on ``obj``'s change page: label and URL."""
        if obj is None or obj.pk is None or not self.has_button_permission(request, obj):
            return []
        return [
            {"label": method.button_label,
             "url": reverse(f"admin:{self._button_url_name(name)}", args=[quote(obj.pk)],
                            current_app=self.admin_site.name)}
            for name in self.object_buttons if (method := getattr(self, name)).button_applies(obj)
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["object_buttons"] = [] if add else self.buttons_for(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _button_view(self, name: str):
        def view(request, object_id):
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            obj = self.get_object(request, unquote(object_id))
            if obj is None:
                raise Http404(f"No {self.model._meta.verbose_name} with this id.")
            if not self.has_button_permission(request, obj):
                raise PermissionDenied
            method = getattr(self, name)
            opts = self.model._meta
            back = HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change",
                                                args=[quote(obj.pk)], current_app=self.admin_site.name))
            if not method.button_applies(obj):
                self.message_user(request, f"{method.button_label}: does not apply to {obj}.", messages.WARNING)
                return back
            try:
                return method(request, obj) or back
            except ApiError as exc:
                self.message_user(request, f"{method.button_label}: {error_message(exc)}", messages.ERROR)
                return back
        view.__name__ = f"{name}_view"
        return view
