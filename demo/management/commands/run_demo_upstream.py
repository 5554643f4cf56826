"""Serve the demo upstream and run its webhook sender until SIGINT or SIGTERM; its notification receiver
verifies with the secrets of the endpoints pointed at it, read from the database as the sender reads its own."""
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from demo.upstream import DemoUpstream, WebhookSender
from demo.upstream.api import ROTATE_EVERY_SECONDS
from demo.upstream.notifications import RECEIVER_PATH, endpoint_secrets_in_thread
from demo.upstream.sender import SEND_EVERY_SECONDS


class Command(BaseCommand):
    help = ("Serve the demo upstream (the demo integrations' REST API and OAuth provider, the demo tenant's "
            "notification receiver) on loopback, and post signed webhook deliveries to the hub every few seconds. "
            "Local run only.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8001, help="Port to listen on (default 8001).")
        parser.add_argument("--hub-url", default="http://127.0.0.1:8000",
                            help="The hub's base URL, where webhook deliveries go (default http://127.0.0.1:8000).")
        parser.add_argument("--send-every", type=float, default=SEND_EVERY_SECONDS,
                            help=f"Seconds between webhook deliveries; 0 sends none (default {SEND_EVERY_SECONDS:g}).")
        parser.add_argument("--rotate-every", type=float, default=ROTATE_EVERY_SECONDS,
                            help=f"Seconds between status changes (default {ROTATE_EVERY_SECONDS:g}).")
        parser.add_argument("--auto-approve", action="store_true",
                            help="Approve OAuth authorization requests without showing the consent page.")

    def handle(self, *args, **options):
        try:
            upstream = DemoUpstream(host=options["host"], port=options["port"], rotate_every=options["rotate_every"],
                                    auto_approve=options["auto_approve"],
                                    notification_secrets=endpoint_secrets_in_thread)
        except OSError as exc:
            raise CommandError(f"Cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}") from None
        sender = None
        if options["send_every"] > 0:
            sender = WebhookSender(hub_url=options["hub_url"], feed=upstream.payments, every=options["send_every"])
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        upstream.start()
        if sender is not None:
            sender.start()
        self.stdout.write(f"Demo upstream listening at {upstream.base_url}/ (health: {upstream.base_url}/health)")
        self.stdout.write(f"Receiving the hub's notifications at {upstream.base_url}{RECEIVER_PATH} "
                          f"(GET it: the last ones received)")
        if sender is not None:
            self.stdout.write(f"Sending webhook deliveries to {options['hub_url']} every {options['send_every']:g}s")
        self.stdout.flush()
        while not stopping.wait(1):
            pass
        self.stdout.write("Demo upstream stopping")
        if sender is not None:
            sender.stop()
        upstream.stop()
