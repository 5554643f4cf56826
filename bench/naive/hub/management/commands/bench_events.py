"""Print the ids of the events stored for one webhook endpoint (``--path``) as a JSON list."""
import json

from django.core.management.base import BaseCommand

from hub.models import WebhookEvent


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--path", required=True)

    def handle(self, *args, path, **options):
        ids = WebhookEvent.objects.filter(endpoint__path=path).values_list("pk", flat=True)
        self.stdout.write(json.dumps([str(pk) for pk in ids]))
