"""Operator settings: environment variables prefixed LLMOS_OPERATOR_, declared once here
(`llmos operator --settings` and the Helm chart's `settings:` map name them)."""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmos.builders.common import Images

PREFIX = "LLMOS_OPERATOR_"


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, use_attribute_docstrings=True, frozen=True)

    runtime_image: str = Images.runtime
    """Image of the training, evaluation and serving pods."""
    image_pull_policy: str = Images.pull_policy
    """imagePullPolicy of those pods."""
    workers: int = Field(default=8, ge=1)
    """Objects reconciled at the same time."""
    progress_interval: float = Field(default=10.0, gt=0)
    """Seconds between reads of a running training job's progress (rank 0's log)."""
    resync_interval: float = Field(default=600.0, gt=0)
    """Seconds between visits of every object even without events (reads only when idle)."""
    restart_grace: float = Field(default=15.0, ge=0)
    """Seconds a failed training group gets to stop (beyond its pods leaving the API) before the next starts."""
    retry_max: float = Field(default=60.0, gt=0)
    """Longest back-off, in seconds, after a failed reconciliation."""

    @property
    def images(self) -> Images:
        return Images(runtime=self.runtime_image, pull_policy=self.image_pull_policy)

    @classmethod
    def documentation(cls) -> str:
        """One line per setting: NAME (default): description."""
        return "\n".join(
            f"{PREFIX}{name.upper()} ({field.default}): {field.description}" for name, field in cls.model_fields.items()
        )


def settings_error(exc: ValidationError) -> str:
    """The variables to fix, by name."""
    return "; ".join(f"{PREFIX}{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
