"""Hot read paths: a ModelSerializer's answer built from ``values()`` rows.

A page of 50 read through a ``ModelSerializer`` builds 50 model instances (and
those of every ``select_related`` relation), then walks each field's
attributes through ``get_attribute``; that is most of a list request's CPU.
``RowRepresentation`` reads the same columns with ``values()`` and turns each
value into JSON with the serializer's *own* field objects, so the answer is
the serializer's by construction (same names, order, formats) and the
OpenAPI document, which still names the serializer, stays exact. Fields a row
cannot give (``SerializerMethodField``) are computed by the caller's functions.
"""
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

# Fields whose to_representation returns a value of the type the database already gives unchanged.
_AS_STORED = (serializers.CharField, serializers.ChoiceField, serializers.BooleanField, serializers.JSONField)


class RowRepresentation:
    """``serializer_class``'s answer for ``values()`` rows.

    ``computed`` maps a field name to ``function(row) -> value`` for fields that
    are not a column (method fields); every other field reads the column its
    ``source`` names (``provider.slug`` is the row's ``provider__slug``).
    """

    def __init__(self, serializer_class, computed: dict[str, Callable[[dict], object]] | None = None):
        self.computed = computed or {}
        self.fields = []  # (name, row key, converter or None)
        for name, field in serializer_class().fields.items():
            if field.write_only:
                continue
            if name in self.computed:
                self.fields.append((name, None, self.computed[name]))
                continue
            if isinstance(field, serializers.SerializerMethodField):
                raise ValueError(f"{serializer_class.__name__}.{name} needs a function in computed=")
            key = field.source.replace(".", "__")
            self.fields.append((name, key, _converter(field)))

    @property
    def columns(self) -> list[str]:
        """The ``values()`` names the rows must hold."""
        return [key for _, key, _ in self.fields if key is not None]

    def one(self, row: dict, zone=None) -> dict:
        zone = zone or timezone.get_current_timezone()
        data = {}
        for name, key, convert in self.fields:
            if key is None:
                data[name] = convert(row)
                continue
            value = row[key]
            if convert is None or value is None:
                data[name] = value
            elif convert is _iso_datetime:
                data[name] = _iso_datetime(value, zone)
            else:
                data[name] = convert(value)
        return data

    def many(self, rows) -> list[dict]:
        zone = timezone.get_current_timezone()  # once a page, not once a value as DateTimeField does
        return [self.one(row, zone) for row in rows]


def _converter(field):
    """None when the stored value is already the answer; else how to turn it into the answer."""
    if isinstance(field, _AS_STORED) and not getattr(field, "binary", False):
        return None
    if isinstance(field, serializers.UUIDField) and field.uuid_format == "hex_verbose":
        return str
    if (isinstance(field, serializers.DateTimeField) and settings.USE_TZ and not hasattr(field, "timezone")
            and getattr(field, "format", api_settings.DATETIME_FORMAT) in (ISO_8601, "iso-8601")):
        return _iso_datetime  # DateTimeField.to_representation, the current time zone read once a page
    return field.to_representation


def _iso_datetime(value, zone) -> str:
    value = value.astimezone(zone) if timezone.is_aware(value) else timezone.make_aware(value, zone)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
