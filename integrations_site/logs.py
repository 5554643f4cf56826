"""JSON log lines (``LOG_FORMAT=json``): one object per line with the request id and any ids given.

Messages follow ``"<dotted.event.name> key=value key=value"``; the event name
becomes ``event`` and each ``key=value`` pair a field of its own (so
``integration=…`` and ``tenant=…`` are searchable). A message without a
dotted name (Django's own, a library's) keeps the logger name as its event.
The whole text is always in ``message``; values passed with ``extra=`` are
kept as fields too.
"""
import json
import logging
import re
from datetime import UTC, datetime

from .api.middleware import current_request_id

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id"}
_EVENT = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$")
_PAIR = re.compile(r"(?:^|\s)([a-z][a-z0-9_]*)=(\S+)")
_RESERVED = {"time", "level", "logger", "event", "message", "request_id", "exception"}
# Objects some loggers pass with ``extra=`` that are not fields (django.request passes the request).
_SKIPPED = {"request"}


class JsonFormatter(logging.Formatter):
    def format(self, record):
        message = record.getMessage()
        head, _, rest = message.partition(" ")
        dotted = bool(_EVENT.match(head))
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": head if dotted else record.name,
            "message": message,
            "request_id": _request_id(record),
        }
        if dotted:
            for key, value in _PAIR.findall(rest):
                if key not in _RESERVED:
                    data.setdefault(key, value)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in _RESERVED and key not in _SKIPPED:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def _request_id(record) -> str:
    found = getattr(record, "request_id", None)
    if found and found != "-":
        return found
    current = current_request_id()
    if current == "-":  # logged after the middleware returned (django.request): the request has it
        return getattr(getattr(record, "request", None), "request_id", None) or current
    return current
