"""The API's JSON renderer: DRF's ``JSONRenderer`` output, written by orjson.

DRF writes JSON with the standard library's encoder, which costs about a tenth of a page of 50
integrations' CPU (bench/README.md). orjson writes the same bytes more than ten times faster: compact
separators, UTF-8 rather than ``\\u`` escapes (``UNICODE_JSON``), keys in their order. What orjson does
not write itself goes to DRF's own ``JSONEncoder.default``: datetimes (``OPT_PASSTHROUGH_DATETIME``:
DRF writes UTC as ``Z``), decimals, lazy strings, querysets. Anything orjson refuses (an integer past
64 bits, a key that is not a string, a string that is not valid UTF-8) is rendered by DRF as before, as
is an answer asked for with an indent (``application/json; indent=4``, the browsable API) and every
answer when ``UNICODE_JSON`` or ``COMPACT_JSON`` is turned off.

Two differences: a float below 1e-4 or from 1e16 up is written as orjson writes it (``0.00001``,
``1e16`` where Python writes ``1e-05``, ``1e+16``: the same number), and a float that is not a
number (NaN, infinity) is written as ``null``, where DRF's strict mode fails the whole answer with a 500.
"""
import orjson
from rest_framework import renderers
from rest_framework.utils.encoders import JSONEncoder

OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# JavaScript's line and paragraph separators, escaped as DRF escapes them (the answer stays a strict subset of JS).
LINE_SEPARATORS = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


class JSONRenderer(renderers.JSONRenderer):
    default = staticmethod(JSONEncoder().default)

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if (data is None or self.ensure_ascii or not self.compact
                or self.get_indent(accepted_media_type, renderer_context or {}) is not None):
            return super().render(data, accepted_media_type, renderer_context)
        try:
            rendered = orjson.dumps(data, default=self.default, option=OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)
        if b"\xe2\x80" in rendered:
            for separator, escaped in LINE_SEPARATORS:
                rendered = rendered.replace(separator, escaped)
        return rendered
