"""Keys of the custom resources, and who uses which LanguageModel (so that a model's or a
claim's event wakes the objects it concerns)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class ModelUsers:
    """Which TrainingJobs and ModelEndpoints name which LanguageModel (a model's change
    concerns them), and which models live in a namespace (a claim's change concerns them)."""

    def __init__(self) -> None:
        self._users: dict[tuple[str, str], set[Key]] = defaultdict(set)
        self._model_of: dict[Key, str] = {}
        self._models: dict[str, set[Key]] = defaultdict(set)

    def record(self, key: Key, model: str | None) -> None:
        self.forget(key)
        if model is not None:
            self._model_of[key] = model
            self._users[(key.namespace, model)].add(key)

    def forget(self, key: Key) -> None:
        model = self._model_of.pop(key, None)
        if model is not None:
            self._users[(key.namespace, model)].discard(key)
            if not self._users[(key.namespace, model)]:
                del self._users[(key.namespace, model)]
        self._models.get(key.namespace, set()).discard(key)

    def users(self, namespace: str, model: str) -> set[Key]:
        return set(self._users.get((namespace, model), ()))

    def add_model(self, key: Key) -> None:
        self._models[key.namespace].add(key)

    def models(self, namespace: str) -> set[Key]:
        return set(self._models.get(namespace, ()))

    def known(self) -> list[Key]:
        return [*self._model_of, *(k for keys in self._models.values() for k in keys)]
