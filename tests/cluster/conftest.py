"""The `cluster` fixture: a real Kubernetes API server with real nodes.

Where it comes from, first match wins:
- `--kubeconfig PATH` or $KUBECONFIG: any cluster whose context name says it is for tests
  (contains "test" or "kind"); anything else is refused, so a production context is never hit;
- `--kind`: a kind cluster made by pytest-kind (a user's machine with Docker and internet);
- `--local-cluster`: `hack/test-env` on this machine (root): the cluster, images and helm.
Without any of them the cluster tests are skipped, by choice; `make test` always passes
`--local-cluster`, so CI runs them all.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BIN, REPO, corpus_path

LOCAL_KUBECONFIG = Path(os.environ.get("CLUSTER_DIR", "/var/lib/llmos-cluster")) / "admin.kubeconfig"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


def kubectl_binary() -> str:
    built = Path.home() / ".cache/llmos/kubernetes/v1.34.4/bin/kubectl"
    found = str(built) if built.is_file() else shutil.which("kubectl")
    if found is None:
        raise pytest.UsageError("kubectl is needed for the cluster tests (hack/build-kubernetes builds one)")
    return found


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl_path: str

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}{result.stdout}"
            )
        return result

    def apply(self, namespace: str, *docs: dict[str, Any]) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(docs))

    def get(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout))


def refuse_unless_test_context(kubeconfig: Path) -> None:
    config = yaml.safe_load(kubeconfig.read_text())
    context = str(config.get("current-context", ""))
    if "test" not in context and "kind" not in context:
        pytest.exit(
            f"refusing kube context {context!r}: the tests only run against a test cluster "
            "(a context name containing 'test' or 'kind')",
            returncode=2,
        )


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    option = request.config.getoption
    kubeconfig_option = option("--kubeconfig") or os.environ.get("KUBECONFIG")
    if option("--local-cluster"):
        # `make test` ran hack/test-env before pytest; here it only confirms (seconds).
        subprocess.run([str(REPO / "hack" / "test-env")], check=True)
        kubeconfig = LOCAL_KUBECONFIG
    elif option("--kind"):
        kind = request.getfixturevalue("kind_cluster")  # pytest-kind, installed by the user
        kubeconfig = Path(kind.kubeconfig_path)
    elif kubeconfig_option:
        kubeconfig = Path(kubeconfig_option)
    else:
        pytest.skip("no cluster configured (use --local-cluster, --kind or --kubeconfig)")
    refuse_unless_test_context(kubeconfig)
    found = Cluster(kubeconfig, kubectl_binary())
    found.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    found.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    yield found


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"llmos-test-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


CLAIM = "llmos-models"


class Operator:
    """`llmos operator` as a local process against the test cluster, restartable."""

    def __init__(self, cluster: Cluster, namespace: str, log: Path) -> None:
        self.log = log
        self.cmd = [str(BIN / "llmos"), "operator", "--namespace", namespace]
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "LLMOS_OPERATOR_RUNTIME_IMAGE": "llmos/runtime:dev",
            "LLMOS_OPERATOR_PROGRESS_INTERVAL": "2",
        }
        self.proc = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("a") as out:
            return subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)

    def restart(self) -> None:
        self.stop()
        self.proc = self.start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)

    def kill_and_restart(self) -> None:
        """SIGKILL: no cleanup at all, as when a node dies."""
        self.proc.kill()
        self.proc.wait(30)
        self.proc = self.start()


@pytest.fixture
def operator(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    running = Operator(cluster, namespace, tmp_path / "operator.log")
    yield running
    running.stop()


@pytest.fixture
def storage(cluster: Cluster, namespace: str) -> None:
    """A shared claim holding the corpus, as a user would prepare it."""
    from tests.cluster.test_cluster import pod

    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "2Gi"}}},
    }
    cluster.apply(namespace, claim, pod("loader", "mkdir -p /models/data && sleep 600", volumes={CLAIM: "/models"}))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/loader", "--timeout=180s")
    cluster.kubectl("cp", str(corpus_path()), f"{namespace}/loader:/models/data/tinyshakespeare.txt")
    cluster.kubectl("delete", "-n", namespace, "pod/loader", "--wait=false")


def give_passing_version(cluster: Cluster, namespace: str, model: str, uri: str) -> None:
    """Write a passing v1 into a model's status, as a finished TrainingJob would (for tests
    of endpoints that need no training)."""
    version = {
        "name": "v1",
        "uri": uri,
        "step": 1,
        "tokensSeen": 1,
        "producedBy": "j",
        "evaluation": {"metrics": {}, "passed": True},
        "createdAt": "2026-01-01T00:00:00Z",
    }
    patch = {"status": {"versions": [version], "latestVersion": "v1", "latestPassingVersion": "v1"}}
    cluster.kubectl(
        "patch", "-n", namespace, "lm", model, "--subresource=status", "--type=merge", "-p", json.dumps(patch)
    )
