from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        # Imported here, not at the top: services load models, which the app registry must hold first.
        from connections.services.integrations import DELETE_HOOKS

        from .services import endpoints_disable_for_integration

        # Deleting an integration turns its endpoints off, in the delete's transaction (audited there).
        if endpoints_disable_for_integration not in DELETE_HOOKS:
            DELETE_HOOKS.append(endpoints_disable_for_integration)
