"""Request id: echoed from the caller or generated, on every response and log line."""
import contextvars
import logging
import os
import random
import re

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
client_ip_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_ip", default=None)

# A caller's id is echoed only when it is short and plain, so it cannot smuggle
# header or log injection.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)  # each forked worker draws its own ids


def new_request_id() -> str:
    """32 hex digits, as ``uuid4().hex`` reads, from a random generator of this module's own: an id to
    find a request by needs no secrecy, and a syscall for 16 bytes (``os.urandom``) was a tenth of a
    plain answer's time. Its own generator leaves the ``random`` module's state to whoever seeds it."""
    return f"{_ids.getrandbits(128):032x}"


def current_request_id() -> str:
    return request_id_var.get()


def current_client_ip() -> str | None:
    return client_ip_var.get()


class RequestIdMiddleware:
    header = "X-Request-ID"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else new_request_id()
        request.request_id = request_id
        rid_token = request_id_var.set(request_id)
        ip_token = client_ip_var.set(request.META.get("REMOTE_ADDR") or None)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(rid_token)
            client_ip_var.reset(ip_token)
        response[self.header] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record):
        if not hasattr(record, "request_id"):
            request_id = request_id_var.get()
            if request_id == "-":
                # Django logs 4xx/5xx answers ("Not Found: …") after the middleware has returned,
                # passing the request along: its id is on it.
                request_id = getattr(getattr(record, "request", None), "request_id", None) or request_id
            record.request_id = request_id
        return True
