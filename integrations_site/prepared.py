"""Querysets compiled to SQL once per process, then run again with other ids.

Building and compiling a queryset with joins and twenty-odd columns costs more CPU than the database
spends answering it: about 1 ms for a page of integrations, where PostgreSQL takes a few tenths of one.
``Prepared`` compiles what its builder returns once per database and *shape* (say, the ordering), with
stand-in UUIDs for the ids that change from request to request, remembers where each stand-in landed
among the statement's parameters, and later runs the same statement with the real ids. Rows come back
as ``values()`` rows would, through the compiler's own converters (SQLite's text UUIDs and datetimes,
JSON columns), so the answer cannot tell which path made it. On PostgreSQL, timestamps are read with
psycopg's own (compiled) loader rather than Django's Python one: the same instants, with the session's time
zone (UTC) as a ``zoneinfo`` object; parsing them was most of the CPU a page of rows cost to fetch.
Statements run there through ``bound_cursor``: parameters bound by the server, so that psycopg prepares
a statement run often on a connection, and PostgreSQL parses and plans it once per connection.

The builder must return an unsliced ``values()`` queryset whose only varying inputs are the ids it is
given; anything else it reads (a setting, the time) would be frozen at the first compilation.
"""
import functools
import logging
import uuid
from collections.abc import Callable, Hashable

from django.db import InterfaceError, OperationalError, connections

logger = logging.getLogger("integrations_site.db")

Builder = Callable[..., object]  # builder(shape, **ids) -> a values() QuerySet
PREPARE_THRESHOLD = 5  # runs of one statement on a connection before psycopg prepares it (its default)


def bound_cursor(connection):
    """A cursor of ``connection`` (a Django connection) as ``connection.cursor()`` gives, but on
    PostgreSQL binding its parameters on the server: psycopg then prepares a statement once it has run
    ``PREPARE_THRESHOLD`` times on the connection, and PostgreSQL stops parsing and planning it.

    Django's own cursors bind on the client (psycopg never prepares their statements) unless OPTIONS
    asks otherwise (``server_side_binding``), which stays so for the ORM; this is for hot statements
    whose parameters all have a known type. Django turns psycopg's preparing off for the connection;
    it is turned on again here unless OPTIONS names a ``prepare_threshold`` (``DB_PREPARED_STATEMENTS=0``
    sets it to None: behind a pooler that cannot keep prepared statements). Queries still pass
    Django's wrappers (logged, counted, ``execute_wrapper``)."""
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("server_side_binding"):
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    # What BaseDatabaseWrapper._cursor does, with the other cursor class.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None and "prepare_threshold" not in connection.settings_dict["OPTIONS"]:
        raw.prepare_threshold = PREPARE_THRESHOLD
    with connection.wrap_database_errors:
        connection.validate_thread_sharing()
        cursor = ServerBindingCursor(raw)
    if connection.queries_logged:
        return _bound_debug_cursor()(cursor, connection)
    return connection.make_cursor(cursor)


def statement_rows(connection, sql: str, params: list, setup: Callable | None = None) -> list[tuple]:
    """Run one statement on a ``bound_cursor`` and return its rows; the statement checks the connection.

    With CONN_HEALTH_CHECKS, Django sends ``SELECT 1`` before the first query of each request on a
    kept connection: on a path whose whole work is one statement (a webhook's insert, an API read
    whose authentication came from the cache) that doubles the round trips. Here the statement is the
    check: if it fails because the connection was already dead (the server restarted), it runs once
    more on a new connection. Only for statements that may run twice: reads, and writes a second run
    of which the database refuses (the same primary key). ``setup(cursor)``, when given, is called on
    each cursor before the statement runs.
    """
    own_check = (not connection.in_atomic_block and connection.connection is not None
                 and connection.health_check_enabled and not connection.health_check_done)
    if own_check:
        connection.health_check_done = True
    try:
        return _run(connection, sql, params, setup)
    except (OperationalError, InterfaceError):
        if not own_check or connection.is_usable():
            raise
        logger.warning("db.reconnect reason=kept database connection was closed")
        connection.close()
    return _run(connection, sql, params, setup)


def _run(connection, sql: str, params: list, setup: Callable | None) -> list[tuple]:
    with bound_cursor(connection) as cursor:
        if setup is not None:
            setup(cursor)
        cursor.execute(sql, params)
        return cursor.fetchall()


@functools.cache
def _bound_debug_cursor():
    from django.db.backends.postgresql.base import CursorDebugWrapper
    from django.db.backends.utils import CursorWrapper

    class BoundDebugCursor(CursorDebugWrapper):
        """Logs a statement as it was written, with its parameters apart: Django would log the text
        psycopg composed on the client, and a statement bound on the server has none."""

        def execute(self, sql, params=None):
            with self.debug_sql(sql, params):
                return CursorWrapper.execute(self, sql, params)

    return BoundDebugCursor


class _Statement:
    def __init__(self, queryset, stand_ins: dict[str, uuid.UUID]):
        query = queryset.query
        if query.is_sliced:
            raise ValueError("a prepared queryset is sliced by Prepared.rows, not by its builder")
        compiler = query.get_compiler(using=queryset.db)
        self.alias = queryset.db
        self.sql, params = compiler.as_sql()
        self.names = [*query.extra_select, *query.values_select, *query.annotation_select]
        if len(self.names) != compiler.col_count:
            raise ValueError("a prepared queryset must be a values() queryset")
        fields = [column[0] for column in compiler.select[: compiler.col_count]]
        self.converters = list(compiler.get_converters(fields).items())
        self.params = list(params)
        self.slots = []  # (position, id name, the stand-in's form there: the UUID itself, or its hex)
        for position, param in enumerate(self.params):
            for name, stand_in in stand_ins.items():
                if param == stand_in:
                    self.slots.append((position, name, False))
                elif param == stand_in.hex:
                    self.slots.append((position, name, True))
        missing = set(stand_ins) - {name for _, name, _ in self.slots}
        if missing:
            raise ValueError(f"the builder did not use {', '.join(sorted(missing))}")

    def bind(self, ids: dict[str, uuid.UUID]) -> list:
        params = list(self.params)
        for position, name, as_hex in self.slots:
            params[position] = ids[name].hex if as_hex else ids[name]
        return params

    def fetch(self, sql: str, params: list) -> list[tuple]:
        connection = connections[self.alias]
        return statement_rows(connection, sql, params, _read_timestamps if connection.vendor == "postgresql" else None)

    def convert(self, rows: list[tuple]) -> list[dict]:
        connection = connections[self.alias]
        names, converters = self.names, self.converters
        result = []
        for row in rows:
            if converters:
                row = list(row)
                for position, (functions, expression) in converters:
                    value = row[position]
                    for function in functions:
                        value = function(value, expression, connection)
                    row[position] = value
            result.append(dict(zip(names, row, strict=True)))
        return result


def _read_timestamps(cursor):
    """psycopg's loader on this cursor only: Django's cursors keep Django's own."""
    cursor.cursor.adapters.register_loader("timestamptz", _postgres_timestamptz_loader())


@functools.cache
def _postgres_timestamptz_loader():
    from psycopg import postgres, pq

    return postgres.adapters.get_loader(postgres.types["timestamptz"].oid, pq.Format.TEXT)


class Prepared:
    """``builder(shape, **ids)`` compiled once per database and shape; ``rows`` and ``count`` run it.

    ``ids`` name the builder's varying inputs; each is passed to it as a stand-in UUID when compiling
    and given for real (a UUID, or text that must read as one: ValueError otherwise) when running.
    """

    def __init__(self, builder: Builder, *, ids: tuple[str, ...]):
        self.builder, self.ids = builder, ids
        self._statements: dict[tuple, _Statement] = {}

    def _statement(self, shape: Hashable, alias: str | None) -> _Statement:
        key = (alias, shape)
        statement = self._statements.get(key)
        if statement is None:
            stand_ins = {name: uuid.uuid4() for name in self.ids}
            queryset = self.builder(shape, **stand_ins)
            if alias is not None:
                queryset = queryset.using(alias)
            statement = self._statements[key] = _Statement(queryset, stand_ins)
        return statement

    def _ids(self, given: dict) -> dict[str, uuid.UUID]:
        if set(given) != set(self.ids):
            raise TypeError(f"give exactly these ids: {', '.join(self.ids)}")
        return {name: value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)) for name, value in given.items()}

    def rows(self, shape: Hashable = (), *, limit: int | None = None, offset: int = 0, using: str | None = None,
             **ids) -> list[dict]:
        """The rows for ``ids``, ``offset`` skipped, at most ``limit``; as the builder's ``values()`` gives them."""
        statement = self._statement(shape, using)
        params = statement.bind(self._ids(ids))
        sql = statement.sql
        if limit is not None or offset:
            # LIMIT -1 is SQLite's "no limit"; PostgreSQL reads LIMIT NULL as the same.
            sql += " LIMIT %s OFFSET %s"
            params += [limit if limit is not None else (None if connections[statement.alias].vendor != "sqlite"
                                                        else -1), offset]
        return statement.convert(statement.fetch(sql, params))

    def count(self, shape: Hashable = (), *, using: str | None = None, **ids) -> int:
        """How many rows ``rows`` would give for ``ids`` without a limit."""
        statement = self._statement(shape, using)
        rows = statement.fetch(f"SELECT COUNT(*) FROM ({statement.sql}) AS counted",
                               statement.bind(self._ids(ids)))
        return rows[0][0]
