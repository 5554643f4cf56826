"""Re-encrypt every encrypted column under the first key of FERNET_KEYS.

Rotation: put the new key first (``FERNET_KEYS=new,old``), run this command,
then drop the old key. Columns are found by field class across all models, so
encrypted fields added later are covered without touching this file.

Values are read and written as raw column text (the ORM would decrypt them),
in batches, each batch in its own transaction. A row is only rewritten if it
still holds the token that was read, so a concurrent change is never lost.
Safe to re-run: every run simply re-encrypts under the current first key.
"""
import sys
from dataclasses import dataclass

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connections, router, transaction
from tqdm import tqdm

from integrations_site.crypto import DecryptionError, EncryptedTextField, rotate_token


@dataclass
class Column:
    model: type
    field: EncryptedTextField
    total: int = 0
    rotated: int = 0
    failed: int = 0

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field.name}"


def encrypted_columns() -> list[Column]:
    return [
        Column(model, field)
        for model in apps.get_models()
        if not model._meta.proxy and model._meta.managed
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField)
    ]


class Command(BaseCommand):
    help = "Re-encrypt all encrypted columns under the first key of FERNET_KEYS (add the new key first)."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Decrypt and re-encrypt in memory; write nothing.")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--no-progress", action="store_true", help="Do not show a progress bar.")

    def handle(self, *args, **options):
        batch_size = max(1, options["batch_size"])
        dry_run = options["dry_run"]
        columns = encrypted_columns()
        for column in columns:
            column.total = self._count(column)
        show_progress = not options["no_progress"] and sys.stderr.isatty()
        with tqdm(total=sum(c.total for c in columns), unit="value", disable=not show_progress) as bar:
            for column in columns:
                bar.set_description(column.label)
                self._rotate_column(column, batch_size=batch_size, dry_run=dry_run, bar=bar)

        verb = "would rotate" if dry_run else "rotated"
        for column in columns:
            line = f"{column.label}: {verb} {column.rotated} of {column.total}"
            if column.failed:
                self.stdout.write(self.style.ERROR(f"{line}; {column.failed} could not be decrypted"))
            else:
                self.stdout.write(self.style.SUCCESS(line))
        failed = sum(c.failed for c in columns)
        if failed:
            raise CommandError(
                f"{failed} value(s) could not be decrypted with any key in FERNET_KEYS and were left unchanged. "
                "Add the key they were written with to FERNET_KEYS and run again."
            )

    @staticmethod
    def _sql_names(column: Column) -> tuple[str, str, str, str]:
        db = router.db_for_write(column.model)
        connection = connections[db]
        quote = connection.ops.quote_name
        meta = column.model._meta
        return db, quote(meta.db_table), quote(meta.pk.column), quote(column.field.column)

    def _count(self, column: Column) -> int:
        db, table, _, col = self._sql_names(column)
        with connections[db].cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE {col} IS NOT NULL AND {col} <> ''")  # noqa: S608
            return cursor.fetchone()[0]

    def _rotate_column(self, column: Column, *, batch_size: int, dry_run: bool, bar) -> None:
        db, table, pk, col = self._sql_names(column)
        select_first = f"SELECT {pk}, {col} FROM {table} WHERE {col} IS NOT NULL AND {col} <> '' ORDER BY {pk} LIMIT %s"  # noqa: S608,E501
        select_next = (
            f"SELECT {pk}, {col} FROM {table} WHERE {col} IS NOT NULL AND {col} <> '' AND {pk} > %s "  # noqa: S608
            f"ORDER BY {pk} LIMIT %s"
        )
        update = f"UPDATE {table} SET {col} = %s WHERE {pk} = %s AND {col} = %s"  # noqa: S608
        last_pk = None
        while True:
            with transaction.atomic(using=db), connections[db].cursor() as cursor:
                if last_pk is None:
                    cursor.execute(select_first, [batch_size])
                else:
                    cursor.execute(select_next, [last_pk, batch_size])
                rows = cursor.fetchall()
                for row_pk, token in rows:
                    try:
                        new_token = rotate_token(token)
                    except DecryptionError:
                        column.failed += 1
                        continue
                    if not dry_run:
                        # No match means the row changed since it was read: its new value was
                        # written under the current first key already, so it counts as rotated.
                        cursor.execute(update, [new_token, row_pk, token])
                    column.rotated += 1
            bar.update(len(rows))
            if len(rows) < batch_size:
                return
            last_pk = rows[-1][0]
