"""llmos-serve: the OpenAI-compatible server of a model version.

    llmos-serve --model DIR [--port 8000] [--host 0.0.0.0] [--api-key-file /secrets/api-keys]

Every flag can also be given as LLMOS_SERVE_<FLAG> (e.g. LLMOS_SERVE_MAX_CONCURRENT_REQUESTS=32).
SIGTERM (or Ctrl-C) drains: /readyz fails at once, new requests get 503, in-flight requests
and streams finish (at most --drain-timeout seconds), then the process exits 0. A second
signal stops at once.
"""

from __future__ import annotations

import argparse
import threading
import time
from types import FrameType

import uvicorn
from llmos_contract.config import add_arguments, from_arguments

from llmos_runtime.errors import UsageError, exits_cleanly_on_usage_error
from llmos_runtime.serve.app import AppState, create_app
from llmos_runtime.serve.settings import ServeSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """One flag per ServeSettings field (`max_concurrent_requests` → `--max-concurrent-requests`)."""
    p = argparse.ArgumentParser(prog="llmos-serve", description=__doc__.split("\n")[0])
    add_arguments(p, ServeSettings)
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> ServeSettings:
    try:
        settings = from_arguments(ServeSettings, args)
    except ValueError as exc:
        raise UsageError(str(exc).replace("\n", " ")) from exc
    if not (settings.model / "config.json").is_file():
        raise UsageError(f"--model {settings.model}: not a model directory (no config.json)")
    if settings.api_key_file is not None:
        if not settings.api_key_file.is_file():
            raise UsageError(f"--api-key-file {settings.api_key_file}: no such file")
        if not settings.accepted_keys():
            # An empty key file must never mean "no authentication".
            raise UsageError(f"--api-key-file {settings.api_key_file}: holds no API key (one per line)")
    return settings


class DrainingServer(uvicorn.Server):
    """uvicorn, but the first SIGTERM/SIGINT drains before exiting."""

    def __init__(self, config: uvicorn.Config, state: AppState, drain_timeout: float) -> None:
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
