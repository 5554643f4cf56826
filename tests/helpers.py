"""Assertions, test doubles and process wiring shared by the tests."""
import contextlib
import json
import logging
import os
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.db import connection

from integrations_site.api.middleware import RequestIdLogFilter
from integrations_site.logs import JsonFormatter


def assert_envelope(response, status: int, code: str, field: str | None = None) -> dict:
    """The answer is ``status`` with the contract's error envelope and ``code``; returns the error.

    With ``field``, the details must name it.
    """
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    assert error["request_id"] == response["X-Request-ID"]
    if field is not None:
        assert field in error["details"], error
    return error


assert_error = assert_envelope


class JsonLines(logging.Handler):
    """Formats each record as it is emitted (inside the request, where the request id lives)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdLogFilter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))

    def objects(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


def _column_sql(model, field_name: str) -> tuple[str, str, str]:
    meta, quote = model._meta, connection.ops.quote_name
    return quote(meta.db_table), quote(meta.get_field(field_name).column), quote(meta.pk.column)


def raw_value(model, field_name: str, pk):
    """A column as the database stores it (an encrypted field's ciphertext), read past the ORM.

    The key is converted as the ORM converts it for this database (a UUID is hex text on SQLite).
    """
    table, column, key = _column_sql(model, field_name)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE {key} = %s",
                       [model._meta.pk.get_db_prep_value(pk, connection)])
        return cursor.fetchone()[0]


def raw_text(model, field_name: str, pk) -> str:
    """``raw_value`` as text: a JSON column (decoded by PostgreSQL's driver) is dumped back to JSON."""
    value = raw_value(model, field_name, pk)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def write_raw(model, field_name: str, pk, value) -> None:
    """Set a column past the ORM (a ciphertext made by hand)."""
    table, column, key = _column_sql(model, field_name)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {key} = %s",
                       [value, model._meta.pk.get_db_prep_value(pk, connection)])


# --- the database and broker of the processes a test starts ---------------------------------------------------


def on_another_connection(read):
    """``read()`` run on a database connection of its own (another thread's), as another process would
    see the data: what this test's connection has not committed is not there."""
    from concurrent.futures import ThreadPoolExecutor

    def run():
        try:
            return read()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=30)


def current_database_url() -> str:
    """The URL of the database this test runs against (the ``test_…`` one, or the SQLite test file)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = quote(s.get("USER") or "", safe="")
    password = quote(s.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def embedded_broker() -> bool:
    """True in the suite's embedded pass: Celery's filesystem broker under VAR_DIR, no Redis."""
    return settings.CELERY_BROKER_URL.startswith("filesystem")


def fresh_broker_url(db: int) -> str:
    """An empty broker for the processes a test starts: Redis database ``db`` of the shared Redis,
    flushed; or, in the embedded pass, the filesystem broker under VAR_DIR with no message queued
    (processes started with this environment share its folders)."""
    if embedded_broker():
        # The queued messages go; the control folder stays (it holds the exchange bindings that
        # publishing reads: without them a task sent to "celery" has no queue to go to).
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        folder.mkdir(parents=True, exist_ok=True)
        for message in folder.iterdir():
            message.unlink(missing_ok=True)
        return "filesystem://"
    import redis

    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    url = urlunsplit(urlsplit(base)._replace(path=f"/{db}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@contextlib.contextmanager
def celery_broker(url: str):
    """Point this process's Celery app at ``url`` (``memory://`` keeps tasks in the process), and back."""
    from kombu import pools

    from integrations_site.celery import app

    def reset_pools():
        # The connection and producer pools live in kombu's registries, keyed by the broker URL: closing
        # only the app's own would leave a closed pool registered for that URL (filesystem:// is the
        # same URL before and after), and every later send would find it closed.
        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    # Celery reads the CELERY_BROKER_URL environment variable before its own setting
    # (scripts/test.sh exports it), so both are pointed at ``url``.
    previous, previous_env = app.conf.broker_url, os.environ.get("CELERY_BROKER_URL")
    app.conf.broker_url = url
    os.environ["CELERY_BROKER_URL"] = url
    reset_pools()
    try:
        yield app
    finally:
        app.conf.broker_url = previous
        if previous_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = previous_env
        reset_pools()


@contextlib.contextmanager
def kept_connection_dropped():
    """The production settings' kept connection (CONN_HEALTH_CHECKS, CONN_MAX_AGE) whose PostgreSQL
    backend was then terminated, as by a database restart, and a new request begun (its health check
    not yet done). Yields the dropped backend's pid; the settings are restored and the connection
    closed afterwards."""
    import time

    import psycopg
    from django.db import close_old_connections

    kept = {k: connection.settings_dict[k] for k in ("CONN_HEALTH_CHECKS", "CONN_MAX_AGE")}
    connection.settings_dict.update(CONN_HEALTH_CHECKS=True, CONN_MAX_AGE=60)
    try:
        connection.close()
        connection.ensure_connection()
        dropped = connection.connection.info.backend_pid
        close_old_connections()  # what a new request does: its first statement checks the kept connection
        assert connection.health_check_enabled and not connection.health_check_done
        with psycopg.connect(current_database_url().replace("postgres://", "postgresql://", 1),
                             autocommit=True) as other:
            assert other.execute("SELECT pg_terminate_backend(%s)", [dropped]).fetchone() == (True,)
            deadline = time.monotonic() + 10
            while other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [dropped]).fetchone() != (0,):
                assert time.monotonic() < deadline, "the backend did not end"
                time.sleep(0.05)
        yield dropped
    finally:
        connection.settings_dict.update(kept)
        connection.close()
