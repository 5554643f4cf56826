from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo upstream (local run only): stand-in external APIs for the seeded demo integrations."""

    name = "demo"
    verbose_name = "Demo upstream"
