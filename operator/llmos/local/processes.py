"""Local processes of runtime commands: output appended to the object's log, the runtime's
JSON events handed to a callback, the exit announced, and stopping by process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from llmos_contract.events import AnyEvent, decode_event


def runtime_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the runtime entrypoints get: this interpreter's scripts first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def resolve(cmd: list[str], env: dict[str, str]) -> list[str]:
    found = shutil.which(cmd[0], path=env["PATH"])
    if found is None:
        raise FileNotFoundError(f"{cmd[0]}: not installed (is llmos-runtime in this environment?)")
    return [found, *cmd[1:]]


def tail(log: Path, lines: int = 15) -> str:
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


class LocalProcess:
    """One command in its own process group (torchrun and its workers stop together)."""

    def __init__(
        self,
        cmd: list[str],
        log: Path,
        on_event: Callable[[AnyEvent], None],
        on_exit: Callable[[], None],
    ) -> None:
        env = runtime_env()
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"$ {' '.join(cmd)}\n")
        self.proc = subprocess.Popen(
            resolve(cmd, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,
        )
        self._on_event, self._on_exit = on_event, on_exit
        self.finished = threading.Event()
        threading.Thread(target=self._pump, name=f"llmos-{log.stem}", daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        try:
            with self.log.open("a") as out:
                for line in self.proc.stdout:
                    out.write(line)
                    out.flush()
                    event = decode_event(line)
                    if event is not None:
                        self._on_event(event)
        finally:
            self.proc.wait()  # (a callback's error must not leave the step "running")
            self.finished.set()
            self._on_exit()

    @property
    def exit_code(self) -> int | None:
        return self.proc.returncode if self.finished.is_set() else None

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the group, then SIGKILL after `grace` seconds (without waiting for it)."""
        if self.finished.is_set():
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        threading.Thread(target=self._kill_after, args=(grace,), daemon=True).start()

    def _kill_after(self, grace: float) -> None:
        if not self.finished.wait(grace):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> bool:
        return self.finished.wait(timeout)
