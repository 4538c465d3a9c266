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

from tests.conftest import REPO

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
