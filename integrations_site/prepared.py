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

The builder must return an unsliced ``values()`` queryset whose only varying inputs are the ids it is
given; anything else it reads (a setting, the time) would be frozen at the first compilation.
"""
import functools
import uuid
from collections.abc import Callable, Hashable

from django.db import connections

Builder = Callable[..., object]  # builder(shape, **ids) -> a values() QuerySet


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
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.cursor.adapters.register_loader("timestamptz", _postgres_timestamptz_loader())
            cursor.execute(sql, params)
            return cursor.fetchall()

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
