"""Tokens ↔ text for the server: prompts, chat templates, incremental detokenisation, stops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from llmos_runtime.version import DEFAULT_CHAT_TEMPLATE


class ChatTemplate:
    """The tokenizer_config.json chat template, or the documented default:

    <|system|>\\n…\\n<|user|>\\n…\\n<|assistant|>\\n
    """

    def __init__(self, model_dir: Path) -> None:
        config_path = model_dir / "tokenizer_config.json"
        config: dict[str, Any] = json.loads(config_path.read_text()) if config_path.is_file() else {}
        source = config.get("chat_template") or DEFAULT_CHAT_TEMPLATE
        if isinstance(source, list):  # named templates: take "default"
            source = next((t["template"] for t in source if t.get("name") == "default"), None)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self.template = env.from_string(source or DEFAULT_CHAT_TEMPLATE)
        self.special = {k: v for k, v in config.items() if k in ("bos_token", "eos_token")}

    def render(self, messages: list[dict[str, Any]]) -> str:
        return self.template.render(messages=messages, add_generation_prompt=True, **self.special)


class Detokenizer:
    """Turns a growing list of token ids into text deltas, holding back split UTF-8 and
    anything that could still become a stop sequence."""

    def __init__(self, tokenizer: Tokenizer, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.ids: list[int] = []
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def add(self, token_id: int) -> str:
        """Add a token; returns the text that is now safe to send."""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""  # an incomplete multi-byte character: wait for the next token
        self.text = text
        for stop in self.stops:
            at = text.find(stop, max(0, self.emitted - len(stop)))
            if at != -1:
                self.stopped = True
                self.text = text[:at]
                return self.flush()
        safe = len(text) - self.hold
        if safe <= self.emitted:
            return ""
        delta = text[self.emitted : safe]
        self.emitted = safe
        return delta

    def flush(self) -> str:
        delta = self.text[self.emitted :]
        self.emitted = len(self.text)
        return delta
