"""The LLM OS API types, the single source of truth for the CRDs and `llmos validate`."""

from __future__ import annotations

from dataclasses import dataclass

from llmos.api.base import API_VERSION, GROUP, VERSION, ApiModel
from llmos.api.language_model import LanguageModel
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str


@dataclass(frozen=True)
class Kind:
    """A custom resource kind and how kubectl presents it."""

    model: type[ApiModel]
    kind: str
    plural: str
    short_name: str
    columns: tuple[PrinterColumn, ...]
    immutable_spec: bool = False

    @property
    def singular(self) -> str:
        return self.kind.lower()


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation")

KINDS: tuple[Kind, ...] = (
    Kind(
        LanguageModel,
        "LanguageModel",
        "languagemodels",
        "lm",
        (
            PrinterColumn("Latest", "string", ".status.latestVersion", "Newest version"),
            PrinterColumn("Passing", "string", ".status.latestPassingVersion", "Newest passing version"),
            AGE,
        ),
    ),
    Kind(
        TrainingJob,
        "TrainingJob",
        "trainingjobs",
        "tj",
        (
            PrinterColumn("Phase", "string", ".status.phase", "Where the job is"),
            PrinterColumn("Step", "integer", ".status.progress.step", "Optimizer steps done"),
            PrinterColumn("Loss", "number", ".status.progress.loss", "Training loss"),
            PrinterColumn("ETA", "string", ".status.progress.eta", "Estimated time left"),
            AGE,
        ),
        immutable_spec=True,
    ),
    Kind(
        ModelEndpoint,
        "ModelEndpoint",
        "modelendpoints",
        "me",
        (
            PrinterColumn("Model", "string", ".spec.modelRef.name", "The LanguageModel served"),
            PrinterColumn("Version", "string", ".status.servedVersion", "The version served"),
            PrinterColumn("Ready", "integer", ".status.readyReplicas", "Ready replicas"),
            PrinterColumn("URL", "string", ".status.url", "Base URL of the API"),
            PrinterColumn(
                "Status", "string", '.status.conditions[?(@.type=="Ready")].message', "Why it is (not) ready"
            ),
        ),
    ),
)

KIND_BY_NAME: dict[str, Kind] = {k.kind: k for k in KINDS}


def find_kind(word: str) -> Kind:
    """The kind a user means by `word`: LanguageModel, languagemodels, lm, …"""
    w = word.lower()
    for k in KINDS:
        if w in (k.kind.lower(), k.plural, k.singular, k.short_name):
            return k
    names = ", ".join(f"{k.kind} ({k.short_name})" for k in KINDS)
    raise KeyError(f"unknown kind {word!r}; expected one of {names}")


__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "KIND_BY_NAME",
    "VERSION",
    "Kind",
    "LanguageModel",
    "ModelEndpoint",
    "PrinterColumn",
    "TrainingJob",
    "find_kind",
]
