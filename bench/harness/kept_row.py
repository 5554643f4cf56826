"""Our WSGI application with the integration detail's row kept in process memory: the ceiling a cache of
that row could reach, for ``api_list.py --ceiling``.

The first read of each (columns, tenant, id) goes to the database; every later one is answered from this
process's memory: no query and no row conversion. Authentication, the rate count in Redis, the role
check, the row's answer, rendering and headers are ours, unchanged. Only a bench serves this: a kept
row never sees a write.
"""
from integrations_site.wsgi import application  # noqa: F401, I001 (first: it sets Django up; gunicorn serves it)
from connections import selectors  # noqa: E402

_read = selectors.TENANT_INTEGRATION.rows
_kept: dict = {}


def _kept_rows(shape=(), *, limit=None, offset=0, using=None, **ids):
    key = (shape, limit, offset, using, tuple(sorted((name, str(value)) for name, value in ids.items())))
    rows = _kept.get(key)
    if rows is None:
        rows = _kept[key] = _read(shape, limit=limit, offset=offset, using=using, **ids)
    return rows


selectors.TENANT_INTEGRATION.rows = _kept_rows
