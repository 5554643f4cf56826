"""One tenant (``search-bench``) with ``--count`` search-enabled integrations, the n-th at
``--upstream``/u<n>, and one API key; prints ``{"key": …}``. Rows are made anew on every run."""
import json
import secrets

from django.core.management.base import BaseCommand
from django.db import transaction

from hub.models import ApiKey, Integration, Provider, Tenant


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--upstream", required=True)
        parser.add_argument("--count", type=int, default=50)

    def handle(self, *args, upstream, count, **options):
        with transaction.atomic():
            Tenant.objects.filter(slug="search-bench").delete()
            tenant = Tenant.objects.create(slug="search-bench", name="Search bench")
            provider, _ = Provider.objects.get_or_create(slug="search-bench", defaults={"name": "Search bench"})
            Integration.objects.bulk_create([
                Integration(tenant=tenant, provider=provider, name=f"Search {n:02d}", search_enabled=True,
                            api_base_url=f"{upstream}/u{n}", timeout_seconds=5) for n in range(count)])
            key = ApiKey.objects.create(tenant=tenant, name="bench", key=secrets.token_urlsafe(32))
        self.stdout.write(json.dumps({"key": key.key}))
