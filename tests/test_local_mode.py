"""`llmos run -f DIR`: the manifests end to end on this machine, no cluster."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import openai
import pytest
import yaml
from llmos_runtime.hardware import compute_precision, detect

from tests.conftest import BIN, REPO, free_port, run_tool

pytestmark = pytest.mark.slow


def tiny_example(folder: Path, corpus: Path, gate: float, steps: int = 30) -> Path:
    """The shakespeare example, shrunk to seconds of training on a local copy of the corpus."""
    docs = {p.stem: yaml.safe_load(p.read_text()) for p in (REPO / "examples" / "shakespeare").glob("*.yaml")}
    docs["model"]["spec"]["architecture"] = {"hiddenSize": 64, "numLayers": 2, "numHeads": 4, "contextLength": 128}
    docs["model"]["spec"]["tokenizer"]["vocabSize"] = 512
    spec = docs["training"]["spec"]
    spec["dataset"] = {"uri": f"file://{corpus}"}
    spec["hyperparameters"].update(steps=steps, batchSize=8, sequenceLength=64, warmupSteps=3, logEverySteps=5)
    spec["checkpoint"]["everySteps"] = 10
    spec["evaluation"] = {"maxBatches": 5, "samples": 1, "gate": [{"metric": "bitsPerByte", "op": "<=", "value": gate}]}
    folder.mkdir(parents=True, exist_ok=True)
    for name, doc in docs.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def llmos(state: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool("llmos", *args, "--state-dir", state, check=check)


def wait_for(predicate: object, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_train_evaluate_serve_and_answer(tmp_path: Path, corpus: Path) -> None:
    manifests = tiny_example(tmp_path / "example", corpus, gate=7.5)
    state, port = tmp_path / "state", free_port()
    proc = subprocess.Popen(
        [str(BIN / "llmos"), "run", "-f", str(manifests), "--state-dir", str(state), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        endpoint_file = state / "objects" / "modelendpoints" / "shakespeare.yaml"
        wait_for(
            lambda: (
                (
                    endpoint_file.is_file()
                    and yaml.safe_load(endpoint_file.read_text())["status"].get("phase") == "Ready"
                )
                or proc.poll() is not None
            )
        )
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        url = yaml.safe_load(endpoint_file.read_text())["status"]["url"]
        assert url == f"http://127.0.0.1:{port}/v1"
        client = openai.OpenAI(base_url=url, api_key="none")
        stream = client.chat.completions.create(
            model="shakespeare", messages=[{"role": "user", "content": "ROMEO:"}], max_tokens=20, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text
        tj = llmos(state, "get", "tj").stdout.splitlines()
        assert tj[0].split() == ["NAME", "PHASE", "STEP", "LOSS", "ETA", "AGE"]
        assert tj[1].split()[:3] == ["shakespeare-v1", "Succeeded", "30"]
        job = yaml.safe_load((state / "objects" / "trainingjobs" / "shakespeare-v1.yaml").read_text())
        assert job["status"]["progress"]["precision"] == compute_precision("auto", detect())  # what auto chose here
        evaluation = job["status"]["evaluation"]  # the example exports an int8 variant: judged as served
        assert evaluation["variants"]["int8"]["passed"] is True
        int8_bpb = evaluation["variants"]["int8"]["metrics"]["bitsPerByte"]
        assert abs(int8_bpb - evaluation["metrics"]["bitsPerByte"]) < 0.01 * evaluation["metrics"]["bitsPerByte"]
        [version] = [p.parent for p in state.rglob("llmos.json") if p.parent.name == "v1"]
        assert (version / "int8" / "config.json").is_file() and (version / "model-q8_0.gguf").is_file()
        lm = llmos(state, "get", "lm", "shakespeare").stdout.splitlines()
        assert lm[1].split()[:3] == ["shakespeare", "v1", "v1"]
        me = llmos(state, "get", "me").stdout.splitlines()[1].split()
        assert me[:5] == ["shakespeare", "shakespeare", "v1", "1", url]
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert "ready at" in output and "curl" in output
    report = run_tool("llmos", "report", "tj/shakespeare-v1", "--state-dir", state, "--out", tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG" and "bitsPerByte" in report.stdout
    assert "llmos_runtime.train" in llmos(state, "logs", "tj/shakespeare-v1").stdout

    again = llmos(state, "run", "-f", str(manifests), "--ask", "ROMEO:", "--port", str(free_port()))
    assert "not re-run" in again.stdout and "> ROMEO:" in again.stdout  # served again, asked, stopped
    events = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    assert {"Preparing", "Training", "Evaluating", "Completed", "Serving"} <= {e["reason"] for e in events}


def test_a_failing_gate_is_recorded_and_never_served(tmp_path: Path, corpus: Path) -> None:
    manifests = tiny_example(tmp_path / "example", corpus, gate=0.5, steps=10)
    state = tmp_path / "state"
    result = llmos(state, "run", "-f", str(manifests), "--port", str(free_port()), check=False)
    assert result.returncode == 1
    lm = yaml.safe_load(llmos(state, "get", "lm", "shakespeare", "-o", "yaml").stdout)
    assert lm["status"]["latestVersion"] == "v1" and "latestPassingVersion" not in lm["status"]
    assert lm["status"]["versions"][0]["evaluation"]["passed"] is False
    me = llmos(state, "get", "me").stdout
    assert "no version that passed its gate" in me and "gate failed: bitsPerByte <= 0.5" in me
    assert "<none>" in me.splitlines()[1]  # no version served


def test_interrupted_training_resumes_from_its_checkpoint(tmp_path: Path, corpus: Path) -> None:
    manifests = tiny_example(tmp_path / "example", corpus, gate=7.5, steps=60)
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [str(BIN / "llmos"), "run", "-f", str(manifests), "--state-dir", str(state), "--no-serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = state / "logs" / "tj-shakespeare-v1.log"
    wait_for(lambda: log.is_file() and '"event": "checkpoint", "step": 20' in log.read_text())
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    assert llmos(state, "get", "tj").stdout.splitlines()[1].split()[1] == "Training"
    interrupted = log.read_text()
    last_checkpoint = max(int(m) for m in re.findall(r'"event": "checkpoint", "step": (\d+)', interrupted))
    assert 20 <= last_checkpoint < 60
    resumed = llmos(state, "run", "-f", str(manifests), "--no-serve")
    assert "resumed from" in resumed.stdout
    # From the newest checkpoint written before the interrupt (training may pass step 20 before Ctrl-C lands).
    assert f'"event": "resumed", "step": {last_checkpoint}' in log.read_text()
    assert llmos(state, "get", "tj").stdout.splitlines()[1].split()[:3] == ["shakespeare-v1", "Succeeded", "60"]


def test_an_invalid_manifest_stops_everything_before_it_runs(tmp_path: Path, corpus: Path) -> None:
    manifests = tiny_example(tmp_path / "example", corpus, gate=7.5)
    doc = yaml.safe_load((manifests / "training.yaml").read_text())
    doc["spec"]["resources"]["procsPerNode"] = 0
    (manifests / "training.yaml").write_text(yaml.safe_dump(doc))
    result = llmos(tmp_path / "state", "run", "-f", str(manifests), check=False)
    assert result.returncode == 1
    assert f"{manifests / 'training.yaml'}: document 1: spec.resources.procsPerNode" in result.stderr
    assert not (tmp_path / "state").exists()
