"""Shared fixtures: the demo corpus, prepared token shards and a briefly trained version.

Everything a test needs is made here from ../shared/data/tinyshakespeare.txt (or
$LLMOS_TEST_CORPUS); nothing is downloaded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmos cluster")
    group.addoption("--local-cluster", action="store_true", help="bring up hack/cluster and run the cluster tests")
    group.addoption("--kind", action="store_true", help="run the cluster tests on a kind cluster (pytest-kind)")
    group.addoption("--kubeconfig", help="run the cluster tests against this kubeconfig (a test context)")


def corpus_path() -> Path:
    override = os.environ.get("LLMOS_TEST_CORPUS")
    path = Path(override) if override else REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the test corpus is missing (set LLMOS_TEST_CORPUS)")
    return path


@pytest.fixture(scope="session")
def corpus() -> Path:
    return corpus_path()


def run_tool(*args: str | Path, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run an installed console script (llmos, llmos-train, …) from this environment."""
    cmd = [str(BIN / str(args[0])), *map(str, args[1:])]
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    run_tool("llmos-prepare", "--data", corpus, "--out", out, "--vocab-size", "512")
    return out


TINY_ARCH = [
    "--hidden-size",
    "64",
    "--num-layers",
    "2",
    "--num-heads",
    "4",
    "--num-kv-heads",
    "2",
    "--context-length",
    "256",
]


@pytest.fixture(scope="session")
def tiny_version(tmp_path_factory: pytest.TempPathFactory, prepared: Path) -> Path:
    """A 2-layer model trained for 60 steps (enough to make greedy text non-degenerate),
    exported in bfloat16 with its int8 variant."""
    root = tmp_path_factory.mktemp("tiny")
    run_tool(
        "llmos-train",
        "--data",
        prepared,
        "--checkpoint-dir",
        root / "ckpt",
        "--version-dir",
        root / "version",
        "--steps",
        "60",
        "--batch-size",
        "16",
        "--sequence-length",
        "64",
        "--warmup-steps",
        "5",
        "--learning-rate",
        "3e-3",
        "--log-every-steps",
        "20",
        "--export-quantization",
        "int8",
        *TINY_ARCH,
    )
    return root / "version"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base_url: str, proc: subprocess.Popen[str], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[str], base_url: str, key: str | None, log: Path) -> None:
        self.proc, self.base_url, self.key, self.log = proc, base_url, key, log


def start_server(model_dir: Path, *extra: str, key_file: Path | None = None) -> ServerProcess:
    port = free_port()
    cmd = [
        str(BIN / "llmos-serve"),
        "--model",
        str(model_dir),
        "--port",
        str(port),
        "--served-model-name",
        "tiny",
        "--threads",
        "1",
        *extra,
    ]
    if key_file is not None:
        cmd += ["--api-key-file", str(key_file)]
    log = Path(tempfile.mkstemp(prefix="llmos-serve-", suffix=".log")[1])
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, proc, log)
    key = key_file.read_text().split()[0] if key_file else None
    return ServerProcess(proc, base, key, log)


@pytest.fixture(scope="module")
def server(tiny_version: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    key_file = tmp_path_factory.mktemp("keys") / "api-keys"
    key_file.write_text("sk-test-one\nsk-test-two\n")
    srv = start_server(tiny_version, "--max-tokens", "64", key_file=key_file)
    yield srv
    srv.proc.terminate()
    srv.proc.wait(30)
