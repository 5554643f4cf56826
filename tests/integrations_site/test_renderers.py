"""The API's JSON renderer writes the bytes DRF's JSONRenderer writes (and leaves to it what orjson refuses)."""
import json
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import models
from django.utils.translation import gettext_lazy
from rest_framework import renderers as drf_renderers
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from integrations_site.api import renderers

OURS, DRF = renderers.JSONRenderer(), drf_renderers.JSONRenderer()
JSON = "application/json"


class Color(models.TextChoices):
    RED = "red"


class Level(models.IntegerChoices):
    HIGH = 3


def every_character() -> str:
    """Each code point below U+3000 (controls, quotes, backslash, Latin, the JS line separators), then astral ones."""
    return "".join(chr(c) for c in range(0x3000) if not 0xD800 <= c < 0xE000) + "😀𝄞\U0010ffff"


VALUES = {
    "scalars": {"none": None, "true": True, "false": False, "zero": 0, "negative": -17, "int64": 2**63 - 1,
                "int64_min": -(2**63), "text": "plain", "empty": "", "quote": 'a"b\\c/d'},
    "floats": [0.0, -0.0, 0.1, 1.5, -2.25, 3.141592653589793, 0.0001, 123456.789, 2.0**52, 1e15],
    "characters": every_character(),
    "separators": "line\u2028paragraph\u2029end",
    "datetimes": [datetime(2026, 12, 7, 8, 30, tzinfo=UTC), datetime(2026, 12, 7, 8, 30, 1, 250, tzinfo=UTC),
                  datetime(2026, 12, 7, 9, 30, tzinfo=timezone(timedelta(hours=1))), datetime(2026, 1, 2, 3, 4, 5)],
    "dates_times": [date(2026, 2, 28), time(23, 59, 58), time(1, 2, 3, 400)],
    "durations": [timedelta(seconds=90), timedelta(days=1, microseconds=5)],
    "decimals": [Decimal("0.10"), Decimal("12345.678900"), Decimal("-1")],
    "uuids": [uuid.UUID("0193a0e4-6f3b-7c1e-9d2a-5b4c3d2e1f00"), uuid.uuid4()],
    "lazy": gettext_lazy("This field is required."),
    "choices": [Color.RED, Level.HIGH],
    "containers": {"tuple": (1, 2, (3,)), "nested": [[], {}, [{"a": [{}]}]], "generator": (n for n in range(3))},
    "return_types": ReturnDict({"id": 1, "items": ReturnList([{"x": 1}], serializer=None)}, serializer=None),
}


@pytest.mark.parametrize("name", VALUES)
def test_the_answer_is_the_bytes_drf_writes(name):
    ours = OURS.render({name: VALUES[name]}, JSON, {})
    if name == "containers":  # a generator is spent once: render DRF's from a fresh one
        VALUES[name]["generator"] = (n for n in range(3))
    assert ours == DRF.render({name: VALUES[name]}, JSON, {})


def test_a_page_of_rows_is_written_as_drf_writes_it():
    rows = [{"id": str(uuid.uuid4()), "name": f"Integration {n:04d}", "status": "active", "settings": {"base_url":
             "https://api.example.com", "headers": {"X-Team": "ops"}}, "last_error": None,
             "created_at": "2026-12-07T08:30:00.123456Z", "credential": {"type": "bearer", "version": n}}
            for n in range(50)]
    page = {"count": 10_000, "next": "https://hub.example.com/api/v1/integrations/?limit=50&offset=50",
            "previous": None, "results": rows}
    assert OURS.render(page, JSON, {}) == DRF.render(page, JSON, {})


def test_line_separators_are_escaped_as_drf_escapes_them():
    assert OURS.render({"s": "a\u2028b\u2029c"}, JSON, {}) == b'{"s":"a\\u2028b\\u2029c"}'


@pytest.mark.parametrize("data", [
    {"big": 2**64},  # past 64 bits: orjson refuses it
    {1: "int key", None: "none key"},  # keys that are not strings
    {"surrogate": "\ud800"},  # not valid UTF-8
])
def test_what_orjson_refuses_is_rendered_by_drf(data):
    try:
        expected = DRF.render(data, JSON, {})
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            OURS.render(data, JSON, {})
        return
    assert OURS.render(data, JSON, {}) == expected


def test_an_unknown_type_fails_as_it_does_in_drf():
    with pytest.raises(TypeError):
        DRF.render({"x": object()}, JSON, {})
    with pytest.raises(TypeError):
        OURS.render({"x": object()}, JSON, {})


@pytest.mark.parametrize(("media_type", "context"), [("application/json; indent=4", {}), (JSON, {"indent": 2})])
def test_an_indented_answer_is_drfs(media_type, context):
    data = {"a": [1, {"b": None}], "when": datetime(2026, 12, 7, tzinfo=UTC)}
    rendered = OURS.render(data, media_type, context)
    assert rendered == DRF.render(data, media_type, context)
    assert b"\n" in rendered


def test_no_data_is_an_empty_body():
    assert OURS.render(None, JSON, {}) == b""


def test_a_float_that_is_not_a_number_is_null_rather_than_a_failed_answer():
    with pytest.raises(ValueError):
        DRF.render({"x": math.nan}, JSON, {})
    assert json.loads(OURS.render({"x": math.nan, "y": math.inf}, JSON, {})) == {"x": None, "y": None}


def test_large_and_small_floats_keep_their_value():
    # Python writes 1e+16 and 1e-05 where orjson writes 1e16 and 0.00001: the same numbers to any JSON reader.
    values = [1e16, 1.5e300, 1e-5, 1e-7, 5e-324, -2.5e-10]
    assert json.loads(OURS.render(values, JSON, {})) == values


def test_an_api_answer_is_written_by_this_renderer_as_drf_would_write_it(admin_client_api, integration):
    response = admin_client_api.get(f"/api/v1/integrations/{integration.pk}/")
    assert (response.status_code, response["Content-Type"]) == (200, JSON)
    assert isinstance(response.accepted_renderer, renderers.JSONRenderer)
    assert response.content == DRF.render(response.data, JSON, {})


@pytest.mark.parametrize("setting", ["ensure_ascii", "compact"])
def test_drfs_own_json_settings_turned_the_other_way_are_drfs(monkeypatch, setting):
    data = {"name": "café", "n": [1, 2]}
    for renderer in (OURS, DRF):
        monkeypatch.setattr(renderer, setting, not getattr(type(renderer), setting), raising=False)
    assert OURS.render(data, JSON, {}) == DRF.render(data, JSON, {}) != b'{"name":"caf\xc3\xa9","n":[1,2]}'
