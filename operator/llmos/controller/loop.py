"""The control loop around a Controller: events enqueue keys, workers reconcile them.

Both backends feed it: kopf's watch events in `llmos operator`, file writes and process
exits in `llmos run`. An event only enqueues the key of the custom resource it concerns
(and of the objects using a changed model); events for one object coalesce while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from llmos.controller.core import Controller
from llmos.controller.index import Key, ModelUsers
from llmos.controller.queue import WorkQueue
from llmos.kube import ApiError
from llmos.reconcile.seams import Conflict

log = logging.getLogger("llmos.controller")


class ControlLoop:
    def __init__(self, controller: Controller, retry_max: float = 60.0) -> None:
        self.controller = controller
        self.retry_max = retry_max
        self.queue: WorkQueue[Key] = WorkQueue()
        self.users = ModelUsers()
        self.failures: dict[Key, int] = {}

    def changed(self, key: Key, body: dict[str, Any] | None) -> None:
        """A custom resource was written (`body`) or deleted (None)."""
        if body is None:
            self.users.forget(key)
            self.queue.forget(key)
        elif key.kind == "LanguageModel":
            self.users.add_model(key)
        else:
            self.users.record(key, (body.get("spec") or {}).get("modelRef", {}).get("name"))
        if body is not None:
            self.queue.add(key)
        if key.kind == "LanguageModel":
            for user in self.users.users(key.namespace, key.name):
                self.queue.add(user)

    async def worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                after = await asyncio.get_running_loop().run_in_executor(None, self.controller.reconcile, key)
                self.failures.pop(key, None)
            except Conflict:
                after = 0.2  # someone wrote first: read again
            except ApiError as exc:
                after = 0.2 if exc.status == 409 else self.backoff(key)
                if exc.status != 409:
                    log.warning("%s: %s (retry in %.1f s)", key, exc, after)
            except Exception:
                after = self.backoff(key)
                log.exception("%s: reconciliation failed (retry in %.1f s)", key, after)
            finally:
                self.queue.done(key)
            if after is not None:
                self.queue.add(key, after=after)

    def backoff(self, key: Key) -> float:
        self.failures[key] = self.failures.get(key, 0) + 1
        return float(min(self.retry_max, 0.5 * 2 ** self.failures[key]))

    async def resync(self, interval: float) -> None:
        """Visit everything now and then, spread over the interval (reads only when idle)."""
        while True:
            await asyncio.sleep(interval * (0.9 + 0.2 * random.random()))
            for key in self.users.known():
                self.queue.add(key, after=random.random() * interval / 10)
