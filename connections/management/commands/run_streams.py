"""``python manage.py run_streams``: hold event streams until SIGTERM or Ctrl-C (then release them)."""
import asyncio

from django.core.management.base import BaseCommand

from connections.services.streams import Consumer


class Command(BaseCommand):
    help = ("Hold the event streams of integrations with update method 'sse' (shared with other "
            "run_streams processes through leases) and apply their events.")

    def add_arguments(self, parser):
        parser.add_argument("--max-streams", type=int, default=None,
                            help="Streams this process holds at most (default STREAM_MAX_PER_PROCESS).")
        parser.add_argument("--lease-seconds", type=float, default=None,
                            help="Lease period (default STREAM_LEASE_SECONDS).")
        parser.add_argument("--name", default=None, help="This consumer's name (default host:pid:random).")

    def handle(self, *args, max_streams=None, lease_seconds=None, name=None, **options):
        if max_streams is not None and max_streams < 1:
            self.stderr.write("--max-streams must be at least 1.")
            raise SystemExit(2)
        if lease_seconds is not None and lease_seconds < 1:
            self.stderr.write("--lease-seconds must be at least 1.")
            raise SystemExit(2)

        async def main():
            consumer = Consumer(capacity=max_streams, lease_seconds=lease_seconds, name=name)
            self.stdout.write(f"run_streams: consumer {consumer.info.name}, up to {consumer.capacity} streams")
            self.stdout.flush()
            await consumer.run()

        asyncio.run(main())
