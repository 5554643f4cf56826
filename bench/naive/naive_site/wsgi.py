"""WSGI entry point (startproject's)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "naive_site.settings")
application = get_wsgi_application()
