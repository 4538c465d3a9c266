"""The contract between the operator and the runtime, imported by both and free of torch.

- `model`: the base of every typed declaration (camelCase on the wire, a docstring per field)
  and the cross-field `Rule` (CEL for the API server, Python for `llmos validate`);
- `config`: the settings the CRDs, the command lines and the runtime's parsers all derive
  from (hyperparameters, architecture, checkpointing, serving limits), and the derivation;
- `events`: what rank 0 prints (progress, checkpoint, resumed, exported) and the evaluation
  result the evaluation step hands back, which always fits a termination message;
- exit codes and file names, below.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
"""A deterministic configuration error: running it again cannot help (no restarts are spent)."""

LINEAGE_FILE = "llmos.json"
"""In a version directory: job, step, tokens seen, data and tokenizer digests, metrics."""
METRICS_FILE = "metrics.json"
"""In a job's directory: the full evaluation (metrics and samples)."""
RESULT_FILE = "result.json"
"""In a job's directory: the evaluation result, as the termination message carries it."""
PROGRESS_LOG = "progress.jsonl"
"""In a job's directory: every progress event (local mode; `llmos report` draws it)."""
TERMINATION_LOG = "/dev/termination-log"
"""Where a container leaves its last words for the kubelet (at most 4096 bytes kept)."""
