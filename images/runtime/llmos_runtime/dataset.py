"""Fetching a corpus: local paths, or https:// into a content-addressed cache.

A file already in the cache (`$LLMOS_CACHE_DIR/datasets/<sha256>`, default
`~/.cache/llmos/datasets/<sha256>`) is used without touching the network, which is how an
offline machine runs the demo: seed the cache once with `llmos-prepare --seed-cache FILE`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from llmos_runtime.errors import UsageError


def cache_dir() -> Path:
    root = os.environ.get("LLMOS_CACHE_DIR") or Path.home() / ".cache" / "llmos"
    return Path(root) / "datasets"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def seed_cache(path: Path) -> Path:
    """Copy a local file into the cache under its own sha256."""
    digest = sha256_of(path)
    target = cache_dir() / digest
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copyfile(path, target.with_suffix(".tmp"))
        os.replace(target.with_suffix(".tmp"), target)
    return target


def local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if "://" in uri:
        raise UsageError(f"--data {uri}: only file://, https:// and plain paths are read here")
    return Path(uri)


def fetch(uri: str, sha256: str | None) -> Path:
    """A local path holding the corpus; verifies sha256 when given."""
    if uri.startswith("https://"):
        if not sha256:
            raise UsageError(f"--data {uri}: an https:// dataset needs --sha256")
        cached = cache_dir() / sha256
        if cached.is_file():
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cached.parent, delete=False) as tmp:
            try:
                with urllib.request.urlopen(uri, timeout=60) as response:
                    shutil.copyfileobj(response, tmp)
            except OSError as exc:
                os.unlink(tmp.name)
                raise UsageError(
                    f"--data {uri}: download failed ({exc}); on an offline machine seed the "
                    f"cache with `llmos-prepare --seed-cache FILE`"
                ) from exc
        got = sha256_of(Path(tmp.name))
        if got != sha256:
            os.unlink(tmp.name)
            raise UsageError(f"--sha256: {uri} has sha256 {got}, expected {sha256}")
        os.replace(tmp.name, cached)
        return cached
    path = local_path(uri)
    if not path.is_file():
        raise UsageError(f"--data {uri}: no such file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"--data {uri}: not readable")
    if sha256:
        got = sha256_of(path)
        if got != sha256:
            raise UsageError(f"--sha256: {path} has sha256 {got}, expected {sha256}")
    return path
