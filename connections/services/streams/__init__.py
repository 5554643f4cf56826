"""Event streams (update method ``sse``): held by ``run_streams`` consumers, shared by leases.

``leases`` (who holds what), ``setup`` (what a stream connects with),
``stream`` (one stream's connection and backoff), ``apply`` (events through
the same upsert as polling, fenced by the lease), ``consumer`` (the loop that
holds them all) and ``state`` (what the API and the admin show).
"""
from .apply import StreamEvent, stream_batch_apply
from .consumer import Consumer
from .leases import eligible_integrations, leases_release, leases_sync
from .state import stream_restart, stream_state
from .stream import backoff_seconds

__all__ = [
    "Consumer", "StreamEvent", "backoff_seconds", "eligible_integrations", "leases_release", "leases_sync",
    "stream_batch_apply", "stream_restart", "stream_state",
]
