"""One exception type for bad input, so every entrypoint reports it the same way."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from llmos_contract import EXIT_USAGE
from llmos_contract.events import UsageErrorEvent, encode_event

T = TypeVar("T")


class UsageError(Exception):
    """Bad input: the message names the flag or file to fix."""


def exits_cleanly_on_usage_error(main: Callable[[], T]) -> Callable[[], T]:
    """Turn a UsageError into one line on stderr and exit status 2, without a traceback."""

    @wraps(main)
    def wrapper() -> T:
        try:
            return main()
        except UsageError as exc:
            # The event tells the operator (from the log) that a restart cannot help.
            print(encode_event(UsageErrorEvent(message=str(exc))), flush=True)
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None

    return wrapper
