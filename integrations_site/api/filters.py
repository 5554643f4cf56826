"""Shared filterset fields, and the filter and ordering backends every list view uses."""
import re
from datetime import UTC

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter

# RFC 3339 (the document's ``format: date-time``): date, time and an offset or Z, nothing else of ISO 8601.
RFC3339_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)


class UtcIsoDateTimeField(IsoDateTimeField):
    """An RFC 3339 date-time (``2024-05-01T12:00:00Z``, ``…+02:00``), handed on in UTC.

    ISO 8601 parsing accepts offsets up to ±23:59, PostgreSQL only up to
    ±15:59; converting first keeps such input from failing in the database.
    """

    def to_python(self, value):
        if isinstance(value, str) and value not in self.empty_values and not RFC3339_DATE_TIME.fullmatch(value):
            raise forms.ValidationError("Enter a date-time like 2024-05-01T12:00:00Z (RFC 3339).", code="invalid")
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("Enter a date/time within the supported range.", code="invalid")


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


# --- Query parameters: refused, not ignored ---------------------------------------------
# django-filter and DRF skip a filter, ordering or page value they cannot read (``?active=maybe``,
# ``?limit=ten``, ``?ordering=nope``) and answer as if it had not been sent. The API answers 400
# VALIDATION_ERROR naming each such parameter instead, as it does for unknown body fields. An empty
# value (``?status=``) still means "not given", as in a submitted form; the document says so
# (``allowEmptyValue``).

# What Django's NullBooleanField reads as a boolean; anything else is refused.
BOOLEAN_SPELLINGS = {"true", "false", "1", "0"}
# Filters whose form takes several values of one parameter.
MULTIPLE_VALUE_FILTERS = (django_filters.MultipleChoiceFilter, django_filters.BaseInFilter)


def query_problems(query, filters: dict) -> dict[str, list[str]]:
    """What django-filter would otherwise skip: repeated or unreadable values of ``filters``."""
    problems: dict[str, list[str]] = {}
    for name, query_filter in filters.items():
        if name not in query:
            continue
        values = query.getlist(name)
        if len(values) > 1 and not isinstance(query_filter, MULTIPLE_VALUE_FILTERS):
            problems[name] = ["Give this parameter once."]
        elif (isinstance(query_filter, django_filters.BooleanFilter) and values[-1]
              and values[-1].lower() not in BOOLEAN_SPELLINGS):
            problems[name] = ["Must be true or false."]
    return problems


class StrictFilterBackend(DjangoFilterBackend):
    """django-filter's backend; a value it would skip is a 400 naming the parameter.

    A query that holds only page and ordering parameters filters nothing: the queryset is
    returned as it is, without building the filterset and its form (half a millisecond a page).
    """

    def filter_queryset(self, request, queryset, view):
        if filters_nothing(request, view):
            return queryset
        return super().filter_queryset(request, queryset, view)

    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            problems = query_problems(request.query_params, filterset.filters)
            if problems:
                raise ValidationError(problems)
        return filterset


def filters_nothing(request, view) -> bool:
    """Whether the query holds only page and ordering parameters (and ``format``)."""
    return set(request.query_params) <= _not_filters(view)


def ordering_of(request, view) -> tuple[str, ...]:
    """The ordering the view's ordering backend applies to this request (400 for an unknown field)."""
    for backend in view.filter_backends:
        if issubclass(backend, OrderingFilter):
            return tuple(backend().get_ordering(request, view.queryset, view) or ())
    return ()


def _not_filters(view) -> set[str]:
    paginator = getattr(view, "paginator", None)
    names = {OrderingFilter.ordering_param, "format"}
    for attribute in ("limit_query_param", "offset_query_param", "page_query_param", "page_size_query_param"):
        if getattr(paginator, attribute, None):
            names.add(getattr(paginator, attribute))
    return names


class StrictOrderingFilter(OrderingFilter):
    """``ordering=field`` / ``-field`` (comma-separated for more than one); an unknown field is a 400.

    The document lists the fields the view orders by, so clients see the choices.
    """

    def get_ordering(self, request, queryset, view):
        values = request.query_params.getlist(self.ordering_param)
        if not values or values == [""]:
            return self.get_default_ordering(view)
        if len(values) > 1:
            raise ValidationError({self.ordering_param: ["Give this parameter once; separate fields with commas."]})
        terms = [term.strip() for term in values[0].split(",")]
        if "" in terms:
            raise ValidationError({self.ordering_param: ["Name a field for each comma, or leave the parameter out."]})
        valid = {name for name, _ in self.get_valid_fields(queryset, view, {"request": request})}
        unknown = [term for term in terms if term.removeprefix("-") not in valid]
        if unknown:
            allowed = ", ".join(sorted(valid))
            raise ValidationError({self.ordering_param: [f"Unknown ordering field(s): {', '.join(unknown)}. "
                                                         f"Allowed: {allowed}, each optionally prefixed by '-'."]})
        return terms

    def get_schema_operation_parameters(self, view):
        fields = _declared_ordering_fields(view)
        if fields is None:
            return super().get_schema_operation_parameters(view)
        return [{
            "name": self.ordering_param,
            "required": False,
            "in": "query",
            "description": "Order by these fields; a leading '-' reverses one. Several are separated by commas. "
                           "Empty is the same as leaving it out.",
            "allowEmptyValue": True,
            "schema": {"type": "array", "items": {"type": "string", "enum": [
                value for name in fields for value in (name, f"-{name}")
            ]}},
            "style": "form",
            "explode": False,
        }]


def _declared_ordering_fields(view) -> list[str] | None:
    """The view's ``ordering_fields`` when it names them (not ``__all__``), else None."""
    fields = getattr(view, "ordering_fields", None)
    if not fields or isinstance(fields, str):
        return None
    return [field if isinstance(field, str) else field[0] for field in fields]

