"""Seed the naive tables like bench/api_list.py seeds ours, and print what the load needs as JSON.

``--tenants`` tenants (``bench-000``…) with ``--per-tenant`` integrations each and
``--keys-per-tenant`` API keys each; rows are reused when the counts match. ``--hook-path`` and
``--hook-secret`` add a webhook endpoint (of the first tenant).
Prints ``{"keys": {slug: [keys]}, "ids": {slug: [integration ids]}}``.
"""
import json
import secrets
import time

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from hub.models import ApiKey, Integration, Provider, Tenant, WebhookEndpoint

SLUG_PREFIX = "bench-"
BATCH = 2000


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--tenants", type=int, default=100)
        parser.add_argument("--per-tenant", type=int, default=100)
        parser.add_argument("--keys-per-tenant", type=int, default=1)
        parser.add_argument("--reseed", action="store_true")
        parser.add_argument("--hook-path", default="")
        parser.add_argument("--hook-secret", default="")

    def handle(self, *args, tenants, per_tenant, keys_per_tenant, reseed, hook_path, hook_secret, **options):
        have_tenants = Tenant.objects.filter(slug__startswith=SLUG_PREFIX)
        have = Integration.objects.filter(tenant__in=have_tenants).count()
        if reseed or have_tenants.count() != tenants or have != tenants * per_tenant:
            started = time.perf_counter()
            with transaction.atomic():
                self.seed(tenants, per_tenant)
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE")
            self.stderr.write(f"naive: seeded {tenants} tenants x {per_tenant} integrations "
                              f"in {time.perf_counter() - started:.1f}s")
        else:
            self.stderr.write(f"naive: reusing {tenants} tenants x {per_tenant} integrations")
        if ApiKey.objects.filter(tenant__slug__startswith=SLUG_PREFIX).count() != tenants * keys_per_tenant:
            ApiKey.objects.all().delete()
            ApiKey.objects.bulk_create([ApiKey(tenant=t, name="bench", key=secrets.token_urlsafe(32))
                                        for t in Tenant.objects.filter(slug__startswith=SLUG_PREFIX)
                                        for _ in range(keys_per_tenant)])
        if hook_path:
            WebhookEndpoint.objects.create(tenant=Tenant.objects.filter(slug__startswith=SLUG_PREFIX).first(),
                                           path=hook_path, secret=hook_secret)
        keys, ids = {}, {}
        for tenant in Tenant.objects.filter(slug__startswith=SLUG_PREFIX):
            keys[tenant.slug] = list(tenant.api_keys.values_list("key", flat=True))
            ids[tenant.slug] = [str(pk) for pk in tenant.integrations.values_list("pk", flat=True)]
        self.stdout.write(json.dumps({"keys": keys, "ids": ids}))

    def seed(self, tenants: int, per_tenant: int) -> None:
        Integration.objects.all().delete()
        WebhookEndpoint.objects.all().delete()
        Tenant.objects.all().delete()
        provider, _ = Provider.objects.get_or_create(
            slug="bench-rest", defaults={"name": "Bench REST", "display_name": "Bench REST"})
        rows = Tenant.objects.bulk_create(
            [Tenant(name=f"Bench {i:03d}", slug=f"{SLUG_PREFIX}{i:03d}") for i in range(tenants)])
        Integration.objects.bulk_create(
            [Integration(tenant=t, provider=provider, name=f"Integration {n:04d}",
                         api_base_url="https://api.example.com", test_endpoint="/ping")
             for t in rows for n in range(per_tenant)],
            batch_size=BATCH,
        )
