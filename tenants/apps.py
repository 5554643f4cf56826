from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self):
        # Every process forgets a changed key or tenant at once, whichever process changed it.
        from django.db.models.signals import post_delete, post_save

        from . import authentication
        from .models import ApiKey, Tenant

        for signal in (post_save, post_delete):
            signal.connect(authentication.api_key_forget, sender=ApiKey, dispatch_uid="tenants.api_key_forget")
            signal.connect(authentication.tenant_keys_forget, sender=Tenant, dispatch_uid="tenants.tenant_keys_forget")
