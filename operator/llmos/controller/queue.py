"""A work queue of object keys, as Kubernetes controllers use them.

- A key waits in the queue at most once however many events name it (events coalesce).
- A key is never handed to two workers at once; one added while it is being processed is
  handed out again after `done` (so the newest state is always reconciled).
- `add(key, after=seconds)` schedules a later visit (progress polling, retries); an earlier
  visit wins over a later one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._queued) + len(self._dirty)

    def add(self, key: K, after: float = 0.0) -> None:
        if after > 0:
            self._schedule(key, after)
            return
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def _schedule(self, key: K, after: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + after
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        key = await self._ready.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def forget(self, key: K) -> None:
        """Drop scheduled visits of a deleted object (a queued one finds it gone and stops)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def busy(self) -> bool:
        """A key waits or is being processed (scheduled visits do not count)."""
        return bool(self._queued or self._processing or self._dirty)

    @property
    def scheduled(self) -> int:
        return len(self._timers)
