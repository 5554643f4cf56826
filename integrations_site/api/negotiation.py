"""Content negotiation that answers the common request without parsing its Accept header.

Nearly every API client sends ``Accept: */*`` or ``Accept: application/json``, or no Accept at all.
DRF's ``DefaultContentNegotiation`` parses the header into media types on every request (and reads
it through ``request.headers``, which gathers every header of the request first) to arrive at the
first renderer, JSON, with ``application/json``. For exactly those headers, and when neither a
format suffix nor ``?format=`` asks for a renderer, that is the answer here at once; anything else
(another type, parameters, quality values, ``text/html`` for the browsable API) is negotiated by DRF
as before.
"""
from rest_framework.negotiation import DefaultContentNegotiation

JSON = "application/json"
COMMON_ACCEPT = frozenset({"*/*", JSON})


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        if (not format_suffix and renderers and renderers[0].media_type == JSON
                and request.META.get("HTTP_ACCEPT", "*/*") in COMMON_ACCEPT
                and self.settings.URL_FORMAT_OVERRIDE not in request.query_params):
            return renderers[0], JSON
        return super().select_renderer(request, renderers, format_suffix)
