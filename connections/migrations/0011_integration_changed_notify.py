"""PostgreSQL: every write to an integration, its credentials or a provider is notified on the channel
``ih_integration_changed`` when it commits (the integration's id; ``*`` for a provider, which every
integration of it shows, and for a ``TRUNCATE``), so each web process forgets its copies of the rows a detail answers from
(``connections.selectors.INTEGRATION_COPIES``). Nothing on other databases: there no copy is kept."""
from django.db import migrations

CHANNEL = "ih_integration_changed"
TABLES = {  # table: what its rows notify
    "connections_integration": "row.id::text",
    "connections_credential": "row.integration_id::text",
    "catalog_integrationprovider": "'*'",
}


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, payload in TABLES.items():
        schema_editor.execute(f"""
            CREATE OR REPLACE FUNCTION {table}_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE row RECORD;
            BEGIN
                IF TG_OP = 'TRUNCATE' THEN
                    PERFORM pg_notify('{CHANNEL}', '*');
                    RETURN NULL;
                END IF;
                IF TG_OP = 'DELETE' THEN row := OLD; ELSE row := NEW; END IF;
                PERFORM pg_notify('{CHANNEL}', {payload});
                RETURN NULL;
            END $$;
            CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION {table}_changed_notify();
            CREATE TRIGGER {table}_truncated AFTER TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION {table}_changed_notify();
        """)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_changed ON {table}; "
                              f"DROP TRIGGER IF EXISTS {table}_truncated ON {table}; "
                              f"DROP FUNCTION IF EXISTS {table}_changed_notify();")


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0010_integration_failing_streak_disabled_reason"),
        ("catalog", "0002_provider_search_and_entity_config"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
