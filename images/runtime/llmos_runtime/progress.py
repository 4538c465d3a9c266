"""Progress reporting from rank 0: a JSON line on stdout, and optionally a file and a URL.

Environment (set by the operator or local mode):
  LLMOS_PROGRESS_FILE  rank 0 keeps the latest progress object here (written atomically)
  LLMOS_PROGRESS_URL   rank 0 POSTs each progress object here (best effort, 2 s timeout)
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from llmos_contract.events import encode_event
from pydantic import BaseModel


def humanize_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def report(event: BaseModel) -> None:
    line = encode_event(event)
    print(line, flush=True)
    path = os.environ.get("LLMOS_PROGRESS_FILE")
    if path:
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(line + "\n")
        os.replace(tmp, target)
    url = os.environ.get("LLMOS_PROGRESS_URL")
    if url:
        request = urllib.request.Request(
            url, data=line.encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            urllib.request.urlopen(request, timeout=2).close()
        except OSError as exc:
            print(f"warning: progress report to {url} failed: {exc}", file=sys.stderr)
