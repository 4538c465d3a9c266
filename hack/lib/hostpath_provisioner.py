"""A dynamic provisioner for the local test cluster: PVCs of the `standard` class get a
hostPath PersistentVolume under --root (one node, so ReadWriteMany holds too).

Polls the API server once a second; writes nothing while nothing changes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from llmos.kube import client_from_environment

PROVISIONER = "llmos.dev/hostpath"
STORAGE_CLASS = "standard"


def persistent_volume(claim: dict[str, Any], path: Path) -> dict[str, Any]:
    meta, spec = claim["metadata"], claim["spec"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta['uid']}", "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec["accessModes"],
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "storageClassName": STORAGE_CLASS,
            "persistentVolumeReclaimPolicy": "Delete",
            "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
        },
    }


def items(api: httpx.Client, path: str) -> list[dict[str, Any]]:
    response = api.get(path)
    response.raise_for_status()
    return list(response.json()["items"])


def reconcile(api: httpx.Client, root: Path) -> None:
    for claim in items(api, "/api/v1/persistentvolumeclaims"):
        spec = claim["spec"]
        if spec.get("storageClassName") != STORAGE_CLASS or spec.get("volumeName"):
            continue
        meta = claim["metadata"]
        path = root / f"{meta['namespace']}-{meta['name']}-{meta['uid'][:8]}"
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)  # pods run as any non-root user
        response = api.post("/api/v1/persistentvolumes", json=persistent_volume(claim, path))
        if response.status_code not in (201, 409):
            print(f"creating a volume for {meta['namespace']}/{meta['name']}: {response.text}", flush=True)
    for volume in items(api, "/api/v1/persistentvolumes"):
        provisioned = volume["metadata"].get("annotations", {}).get("pv.kubernetes.io/provisioned-by")
        if provisioned == PROVISIONER and volume.get("status", {}).get("phase") == "Released":
            shutil.rmtree(volume["spec"]["hostPath"]["path"], ignore_errors=True)
            api.delete(f"/api/v1/persistentvolumes/{volume['metadata']['name']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    api = client_from_environment(str(args.kubeconfig))
    while True:
        try:
            reconcile(api, args.root)
        except httpx.HTTPError as exc:
            print(f"API server: {exc}", flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
