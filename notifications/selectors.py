"""Reads for producers and the admin."""
from .models import NotificationMarker


def markers_taken(keys: list[str]) -> set[str]:
    """Which of ``keys`` (``notify``'s ``once_key``s) were sent already, in one query: a producer that
    scans many rows asks this before calling ``notify`` for each."""
    if not keys:
        return set()
    return set(NotificationMarker.objects.filter(key__in=keys).values_list("key", flat=True))
