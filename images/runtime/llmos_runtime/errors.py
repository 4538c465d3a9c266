"""One exception type for bad input, so every entrypoint reports it the same way."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input: the message names the flag or file to fix."""


def exits_cleanly_on_usage_error(main: Callable[[], T]) -> Callable[[], T]:
    """Turn a UsageError into one line on stderr and exit status 2, without a traceback."""

    @wraps(main)
    def wrapper() -> T:
        try:
            return main()
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None

    return wrapper
