"""Page machinery, for pages only.

Sessions, the session user and messages serve the site's pages (admin, docs, landing).
A request to the API, a webhook receiver or an ops endpoint that carries no session
cookie has no use for them: it passes these three by (a third of a plain view's time in
Django). CSRF stays Django's own middleware, for every request: ``check --deploy`` looks
for it by name, and a page's protection must not hang on a path test. With a session
cookie (the browsable API and the docs after an admin login use session authentication)
a request goes through all of them as a page does.
"""
from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as message_middleware
from django.contrib.sessions import middleware as session_middleware

LEAN_PREFIXES = ("/api/", "/hooks/", "/healthz", "/readyz", "/metrics")


def lean(request) -> bool:
    return request.path_info.startswith(LEAN_PREFIXES) and settings.SESSION_COOKIE_NAME not in request.COOKIES


class PagesOnly:
    """Mixed in before a Django middleware class: a ``lean`` request passes it by."""

    def __call__(self, request):
        if lean(request):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(PagesOnly, session_middleware.SessionMiddleware):
    pass


class AuthenticationMiddleware(PagesOnly, auth_middleware.AuthenticationMiddleware):
    pass


class MessageMiddleware(PagesOnly, message_middleware.MessageMiddleware):
    pass
