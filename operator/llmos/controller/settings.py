"""Operator settings, from environment variables prefixed LLMOS_OPERATOR_ (each documented in
`llmos operator --help` and the Helm chart's values)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from llmos.builders.common import Images

PREFIX = "LLMOS_OPERATOR_"


@dataclass(frozen=True)
class OperatorSettings:
    runtime_image: str = Images.runtime
    """Image of the training, evaluation and serving pods."""
    image_pull_policy: str = Images.pull_policy
    """imagePullPolicy of those pods."""
    workers: int = 8
    """Objects reconciled at the same time."""
    progress_interval: float = 10.0
    """Seconds between reads of a running training job's progress (rank 0's log)."""
    resync_interval: float = 600.0
    """Seconds between visits of every object even without events (reads only when idle)."""
    restart_grace: float = 15.0
    """Seconds a failed training group gets to stop (beyond its pods leaving the API) before the next starts."""
    retry_max: float = 60.0
    """Longest back-off, in seconds, after a failed reconciliation."""

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            kind = type(getattr(cls, f.name))
            try:
                values[f.name] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"{PREFIX}{f.name.upper()}={raw!r}: expected a {kind.__name__}") from exc
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.workers < 1 or settings.progress_interval <= 0 or settings.resync_interval <= 0:
            raise ValueError(f"{PREFIX}WORKERS must be >= 1 and the intervals > 0")
        return settings

    @property
    def images(self) -> Images:
        return Images(runtime=self.runtime_image, pull_policy=self.image_pull_policy)

    @classmethod
    def documentation(cls) -> str:
        """One line per setting: NAME (default): description (from the attribute docstrings)."""
        import ast
        import inspect
        import itertools

        tree = ast.parse(inspect.getsource(cls))
        docs: dict[str, str] = {}
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, after in itertools.pairwise(body):
            if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr):
                docs[node.target.id] = after.value.value  # type: ignore[union-attr, attr-defined]
        return "\n".join(f"{PREFIX}{f.name.upper()} ({f.default}): {docs.get(f.name, '')}" for f in fields(cls))
