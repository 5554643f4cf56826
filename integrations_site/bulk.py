"""Bulk reads and writes in a few hand-written statements, for the hot paths.

The ORM's bulk_create, update and queryset iteration prepare, quote and
convert every value of every row in Python (the PostgreSQL cursor binds
client-side); for a batch of scheduled checks that cost more CPU than the
checks themselves. On PostgreSQL these functions send one statement with few
parameters; elsewhere (SQLite) each does what the ORM call it stands for does.
"""
import json
from functools import cache

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

AUTO_KEYS = ("AutoField", "BigAutoField", "SmallAutoField")


def pg_array(values) -> str:
    """An array literal: one string to quote, where a list parameter is dumped and quoted item by item."""
    return "{" + ",".join(map(str, values)) + "}"


def _aware_text(value) -> str | None:
    """A datetime as DateTimeField stores it: a naive value is in the current time zone."""
    if value is None:
        return None
    return (value if value.tzinfo else timezone.make_aware(value)).isoformat()


@cache
def _insert_plan(model) -> tuple | None:
    """(SQL, columns, attnames, (position, conversion) pairs, auto_now fields) for ``insert``;
    None for a model whose key the database assigns (bulk_create reads it back)."""
    if model._meta.pk.get_internal_type() in AUTO_KEYS:
        return None
    fields = model._meta.concrete_fields
    quote, table = connection.ops.quote_name, connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    sql = f"INSERT INTO {table} ({columns}) SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb)"
    conversions = tuple((k, _aware_text) for k, f in enumerate(fields) if f.get_internal_type() == "DateTimeField")
    auto_now = tuple(f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False))
    return sql, tuple(f.column for f in fields), tuple(f.attname for f in fields), conversions, auto_now


def insert(objects: list) -> None:
    """``bulk_create`` of new instances of one model, in one statement on PostgreSQL.

    The rows go as one JSON parameter (JSON fields as DjangoJSONEncoder
    writes them) and PostgreSQL casts each value to its column's type.
    ``auto_now``/``auto_now_add`` fields are set as bulk_create sets them.
    """
    if not objects:
        return
    model = type(objects[0])
    plan = _insert_plan(model) if connection.vendor == "postgresql" else None
    if plan is None:
        model.objects.bulk_create(objects)
        return
    sql, columns, attnames, conversions, auto_now = plan
    rows = []
    for obj in objects:
        for f in auto_now:
            f.pre_save(obj, True)
        values = vars(obj)  # a new instance holds every column: no descriptor per field
        row = [values[attname] for attname in attnames]
        for k, convert in conversions:
            row[k] = convert(row[k])
        rows.append(dict(zip(columns, row, strict=True)))
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(rows, cls=DjangoJSONEncoder)])
    alias = connection.alias
    for obj in objects:
        obj._state.adding, obj._state.db = False, alias


def fetch(model, attnames, where: str, params: list, annotation: tuple[str, str] | None = None) -> list:
    """Rows as ``.only(*attnames)`` loads them, from ``SELECT … WHERE {where}`` (PostgreSQL SQL).

    ``annotation`` is (attribute, SQL expression): one more column, set on
    each row as ``.annotate()`` would.
    """
    fields = [f for f in model._meta.concrete_fields if f.attname in attnames]
    names, quote, alias = frozenset(f.attname for f in fields), connection.ops.quote_name, connection.alias
    converters = [
        (k, convert, f.cached_col) for k, f in enumerate(fields)
        for convert in connection.ops.get_db_converters(f.cached_col) + f.cached_col.get_db_converters(connection)
    ]
    columns = ", ".join(quote(f.column) for f in fields) + (f", {annotation[1]}" if annotation else "")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {quote(model._meta.db_table)} WHERE {where}", params)
        rows = cursor.fetchall()
    objects = []
    for row in rows:
        values = list(row[:len(fields)])
        for k, convert, col in converters:
            values[k] = convert(values[k], col, connection)
        obj = model.from_db(alias, names, values)
        if annotation:
            setattr(obj, annotation[0], row[-1])
        objects.append(obj)
    return objects


def update(model, pks: list, values: dict) -> None:
    """``model.objects.filter(pk__in=pks).update(**values)`` in one statement with one key parameter."""
    if connection.vendor != "postgresql":
        model.objects.filter(pk__in=pks).update(**values)
        return
    meta, quote = model._meta, connection.ops.quote_name
    fields = [meta.get_field(name) for name in values]
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(meta.db_table)} SET {assignments} "
            f"WHERE {quote(meta.pk.column)} = ANY(%s::{meta.pk.db_type(connection)}[])",
            [*(f.get_db_prep_save(values[f.name], connection) for f in fields), pg_array(pks)],
        )


def rows_update(objects: list, fields: list[str]) -> None:
    """``bulk_update(objects, fields)``: each row's own values, as one parameterised ``UPDATE … WHERE
    pk = %s`` sent with ``executemany`` (psycopg pipelines it; SQLite runs it in C), the same SQL on
    both databases. The ORM's bulk_update builds a ``CASE WHEN`` per field and row in Python instead,
    which for a batch of stream events cost more than the rest of the batch."""
    if not objects:
        return
    meta, quote = objects[0]._meta, connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    sql = (f"UPDATE {quote(meta.db_table)} SET {', '.join(f'{quote(f.column)} = %s' for f in columns)} "
           f"WHERE {quote(meta.pk.column)} = %s")
    params = [
        [*(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in columns),
         meta.pk.get_db_prep_save(obj.pk, connection)]
        for obj in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
