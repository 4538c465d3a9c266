"""llmos-serve: the OpenAI-compatible server of a model version.

    llmos-serve --model DIR [--port 8000] [--host 0.0.0.0] [--api-key-file /secrets/api-keys]

Every flag can also be given as LLMOS_SERVE_<FLAG> (e.g. LLMOS_SERVE_MAX_RUNNING=32).
SIGTERM (or Ctrl-C) drains: /readyz fails at once, new requests get 503, in-flight requests
and streams finish (at most --drain-timeout seconds), then the process exits 0. A second
signal stops at once.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from llmos_runtime.errors import UsageError, exits_cleanly_on_usage_error
from llmos_runtime.serve.app import create_app
from llmos_runtime.serve.settings import ServeSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llmos-serve", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="HF-format model directory")
    p.add_argument("--served-model-name")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--api-key-file", type=Path)
    p.add_argument("--max-running", type=int)
    p.add_argument("--max-waiting", type=int)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--drain-timeout", type=float)
    p.add_argument("--keepalive-seconds", type=float)
    p.add_argument("--threads", type=int)
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> ServeSettings:
    given = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = ServeSettings(**given)
    except ValueError as exc:
        raise UsageError(str(exc).replace("\n", " ")) from exc
    if not (settings.model / "config.json").is_file():
        raise UsageError(f"--model {settings.model}: not a model directory (no config.json)")
    if settings.api_key_file is not None and not settings.api_key_file.is_file():
        raise UsageError(f"--api-key-file {settings.api_key_file}: no such file")
    return settings


class DrainingServer(uvicorn.Server):
    """uvicorn, but the first SIGTERM/SIGINT drains before exiting."""

    def __init__(self, config: uvicorn.Config, state: Any, drain_timeout: float) -> None:
        super().__init__(config)
        self.llmos = state
        self.drain_timeout = drain_timeout

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.llmos.draining:
            super().handle_exit(sig, frame)
            return
        self.llmos.draining = True
        if self.llmos.server is not None:
            self.llmos.server.draining = True
        threading.Thread(target=self._drain, name="llmos-drain", daemon=True).start()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        while time.monotonic() < deadline and self.llmos.in_flight > 0:
            time.sleep(0.05)
        self.should_exit = True


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    settings = settings_from(parse_args(argv))
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=int(settings.drain_timeout) + 1,
        access_log=False,
    )
    DrainingServer(config, app.state.llmos, settings.drain_timeout).run()


if __name__ == "__main__":
    main()
