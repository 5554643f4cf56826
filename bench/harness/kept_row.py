"""Our WSGI application with the integration detail's row kept in process memory: the ceiling a cache of
that row could reach, for ``api_list.py --ceiling``.

The first read of each (columns, tenant, id) goes to the database; every later one is answered from this
process's memory: no query and no row conversion. Authentication, the rate count in Redis, the role
check, the row's answer, rendering and headers are ours, unchanged. Only a bench serves this: a kept
row never sees a write.
"""
from integrations_site.wsgi import application  # noqa: F401, I001 (first: it sets Django up; gunicorn serves it)
from connections import selectors  # noqa: E402


def kept(function, key):
    """``function`` asked once per ``key(*args, **kwargs)``, its answer given again from memory every later time."""
    answers: dict = {}

    def keeping(*args, **kwargs):
        k = key(*args, **kwargs)
        if k not in answers:
            answers[k] = function(*args, **kwargs)
        return answers[k]

    return keeping


def _row_key(shape=(), *, limit=None, offset=0, using=None, **ids):
    return shape, limit, offset, using, tuple(sorted((name, str(value)) for name, value in ids.items()))


selectors.TENANT_INTEGRATION.rows = kept(selectors.TENANT_INTEGRATION.rows, _row_key)
