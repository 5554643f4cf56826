"""The stream consumer: one asyncio loop holding many event streams (``manage.py run_streams``).

Three kinds of task share the loop:
- one ``Stream`` per held integration reads its stream through the outbound
  client (``outbound.streaming``: the address policy on the URL and every
  redirect), parses it (``outbound.sse``) and queues its events;
- the flusher applies what was queued, in batches, on the database thread
  (``apply.stream_batch_apply``), and tells each stream its last applied id;
- the lease round (``leases.leases_sync``) every ``round_seconds``: streams
  to start, restart (config or credential changed, restart asked) or stop.

Django's database work runs on one thread of its own, so the loop never
waits on a query and one connection serves the process. A stream that
fails backs off exponentially (never below the server's ``retry:``, capped
at ``MAX_BACKOFF_SECONDS``); before it reconnects, its queued events are
applied, so ``Last-Event-ID`` is the last event applied.
"""
import asyncio
import functools
import logging
import os
import signal
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django import db
from django.conf import settings
from django.utils import timezone

from integrations_site.outbound import transport

from ...models import StreamConsumer
from .apply import StreamEvent, stream_batch_apply
from .leases import leases_release, leases_sync
from .setup import stream_setups
from .stream import Stream

logger = logging.getLogger("connections.streams")

MAX_PENDING_EVENTS = 20_000  # queued and not applied: readers wait beyond this
BATCH_WAIT_SECONDS = 0.02  # a flush waits this long for more events to join it


class Consumer:
    def __init__(self, *, capacity: int | None = None, lease_seconds: float | None = None,
                 idle_seconds: float | None = None, max_event_bytes: int | None = None, name: str | None = None):
        self.capacity = capacity or settings.STREAM_MAX_PER_PROCESS
        self.lease_seconds = lease_seconds or settings.STREAM_LEASE_SECONDS
        self.idle_seconds = idle_seconds or settings.STREAM_IDLE_SECONDS
        self.max_event_bytes = max_event_bytes or settings.STREAM_MAX_EVENT_BYTES
        self.round_seconds = min(2.0, self.lease_seconds / 3)
        host = socket.gethostname()
        self.info = StreamConsumer(name=name or f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}", hostname=host,
                                   pid=os.getpid(), started_at=timezone.now(), seen_at=timezone.now())
        self.streams: dict[str, Stream] = {}
        self.pending: list[tuple[int, StreamEvent]] = []
        self.states: dict[str, dict] = {}
        self.sequence = self.applied_sequence = 0
        self.wakeup = asyncio.Event()
        self.flushed = asyncio.Condition()
        self.stopping = asyncio.Event()
        self.db = ThreadPoolExecutor(1, thread_name_prefix="streams-db")
        self.heartbeat = settings.STREAMS_HEARTBEAT_FILE

    # --- the database thread -------------------------------------------------------------------------------

    async def on_db(self, function, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self.db, functools.partial(_on_db, function, kwargs))

    # --- running -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stopping.set)
        logger.info("streams.consumer.start name=%s capacity=%s", self.info.name, self.capacity)
        rounds, flusher = asyncio.create_task(self._rounds()), asyncio.create_task(self._flusher())
        try:
            await self.stopping.wait()
        finally:
            rounds.cancel()
            await self._stop_streams(list(self.streams))
            flusher.cancel()
            await asyncio.gather(rounds, flusher, return_exceptions=True)
            try:
                await self._flush()
                released = await self.on_db(leases_release, consumer=self.info)
                logger.info("streams.consumer.stop name=%s released=%s", self.info.name, released)
            finally:
                await transport.aclose()
                await self.on_db(db.connections.close_all)
                self.db.shutdown(wait=True)

    async def _rounds(self) -> None:
        while True:
            try:
                await self._round()
            except Exception:  # noqa: BLE001 (the next round tries again; the leases outlive a few)
                logger.exception("streams.round.failed name=%s", self.info.name)
            await asyncio.sleep(self.round_seconds)

    async def _round(self) -> None:
        known = {pk: stream.config for pk, stream in self.streams.items()}
        outcome = await self.on_db(leases_sync, consumer=self.info, held=set(self.streams), known=known,
                                   capacity=self.capacity, lease_seconds=self.lease_seconds)
        await self._stop_streams(outcome.dropped)
        setups = await self.on_db(stream_setups, wanted={
            pk: (integration, outcome.credentials.get(pk)) for pk, integration in outcome.loaded.items()
        }) if outcome.loaded else {}
        for pk, config in outcome.config.items():
            stream, setup = self.streams.get(pk), setups.get(pk)
            if stream is not None and (setup is None or setup.key == stream.setup.key):
                if setup is not None:
                    stream.setup.integration = setup.integration  # mapping and paths as they are now
                stream.config = config
                if pk in outcome.restart:
                    stream.restart()
                continue
            if setup is None:  # held but not loaded (its row changed between two reads): the next round
                continue
            last_event_id = outcome.leases[pk].last_event_id if pk in outcome.leases else ""
            if stream is not None:
                last_event_id = stream.last_event_id
                await self._stop_streams({pk})
            self.streams[pk] = Stream(self, setup, last_event_id or "")
            self.streams[pk].config = config
        if self.heartbeat:
            Path(self.heartbeat).touch()

    async def _stop_streams(self, ids) -> None:
        stopping = [self.streams.pop(pk) for pk in ids if pk in self.streams]
        for stream in stopping:
            stream.task.cancel()
        await asyncio.gather(*(stream.task for stream in stopping), return_exceptions=True)

    # --- events and states ---------------------------------------------------------------------------------

    async def submit(self, event: StreamEvent) -> int:
        while len(self.pending) >= MAX_PENDING_EVENTS:
            async with self.flushed:
                await self.flushed.wait()
        self.sequence += 1
        self.pending.append((self.sequence, event))
        self.wakeup.set()
        return self.sequence

    def state(self, pk: str, **changes) -> None:
        """Record a stream's state change for the next flush; ``add_<field>`` adds to a counter."""
        current = self.states.setdefault(pk, {})
        for name, value in changes.items():
            current[name] = current.get(name, 0) + value if name.startswith("add_") else value
        self.wakeup.set()

    async def applied(self, sequence: int) -> None:
        """Wait until the events queued up to ``sequence`` are applied (or dropped with their lease)."""
        async with self.flushed:
            await self.flushed.wait_for(lambda: self.applied_sequence >= sequence or self.stopping.is_set())

    async def _flusher(self) -> None:
        while True:
            await self.wakeup.wait()
            await asyncio.sleep(BATCH_WAIT_SECONDS)
            self.wakeup.clear()
            try:
                await self._flush()
            except Exception:  # noqa: BLE001 (its streams reconnect from their last applied event)
                logger.exception("streams.flush.failed name=%s", self.info.name)
                await asyncio.sleep(1)

    async def _flush(self) -> None:
        batch, self.pending = self.pending, []
        states, self.states = self.states, {}
        if not batch and not states:
            return
        events = [event for _, event in batch]
        integrations = {pk: stream.setup.integration for pk, stream in self.streams.items()}
        try:
            outcome = await self.on_db(stream_batch_apply, consumer=self.info.name, integrations=integrations,
                                       events=events, states=states)
        except Exception:
            # Nothing of the batch was applied: its streams start again from their last applied event.
            await self._restart_streams({event.integration_id for event in events})
            raise
        finally:
            async with self.flushed:
                self.applied_sequence = batch[-1][0] if batch else self.applied_sequence
                self.flushed.notify_all()
        for pk, last_event_id in outcome.last_event_ids.items():
            if pk in self.streams:
                self.streams[pk].last_event_id = last_event_id
        if outcome.lost:
            await self._stop_streams(outcome.lost)

    async def _restart_streams(self, ids) -> None:
        for pk in ids:
            if pk in self.streams:
                self.streams[pk].restart()


def _on_db(function, kwargs):
    db.close_old_connections()
    try:
        return function(**kwargs)
    except db.Error:
        db.connection.close()  # a broken connection is not kept for the next call
        raise
