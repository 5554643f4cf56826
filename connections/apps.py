from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "connections"

    def ready(self):
        # A write to the rows an integration's detail is answered from forgets this process's copies of them
        # before it runs (connections/selectors.py); its notification tells every process when it commits.
        from django.db.backends.signals import connection_created

        from .selectors import watch_writes

        connection_created.connect(watch_writes, dispatch_uid="connections.watch_writes")
