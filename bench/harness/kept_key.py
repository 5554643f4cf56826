"""Our WSGI application with the detail's row, its API key's check and its rate count all kept in process
memory: the ceiling of a detail that makes no round trip at all, for ``api_list.py --ceiling``.

On top of harness/kept_row.py (the row), the first check of each API key (one Redis round trip: the key's
record and the request's rate count together) and the first rate count of each caller go to Redis as
always; every later one is answered from this process's memory. Routing, the role check, the row's
answer, rendering, headers and the middleware are ours, unchanged. Only a bench serves this: a kept key
is never revoked and a kept count never grows.
"""
from harness.kept_row import application, kept  # noqa: F401, I001 (first: it sets Django up and keeps the row)
from integrations_site.api import throttles  # noqa: E402
from tenants.authentication import ApiKeyAuthentication  # noqa: E402

ApiKeyAuthentication._authenticate_key = kept(ApiKeyAuthentication._authenticate_key,
                                              lambda self, raw, request, family: (raw, family))
throttles.count_request = kept(throttles.count_request, lambda request, family, key: (family, key))
