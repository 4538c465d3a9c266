"""llmos-prepare: corpus → byte-level BPE tokenizer → train/validation token shards.

    llmos-prepare --data file:///data/tinyshakespeare.txt --vocab-size 4096 --out /work/data
    llmos-prepare --data https://host/corpus.txt --sha256 <hex> --out /work/data
    llmos-prepare --seed-cache tinyshakespeare.txt     # offline: put a file into the cache

The validation split is the tail `--validation-fraction` of the corpus (cut at a line
break), so it is the same whatever the tokenizer. Re-running with the same inputs finds the
manifest and does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from llmos_runtime.dataset import fetch, seed_cache, sha256_of
from llmos_runtime.errors import UsageError, exits_cleanly_on_usage_error
from llmos_runtime.version import END_OF_TEXT, write_json

FORMAT = 1
MIN_VOCAB = 260
MANIFEST = "manifest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llmos-prepare", description=__doc__.split("\n")[0])
    p.add_argument("--data", help="corpus: path, file:///path or https://… (with --sha256)")
    p.add_argument("--sha256", help="expected SHA-256 of the corpus")
    p.add_argument("--out", type=Path, help="directory for tokenizer.json, shards and manifest")
    p.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary size")
    p.add_argument("--tokenizer", type=Path, help="use this tokenizer.json instead of training")
    p.add_argument("--validation-fraction", type=float, default=0.05)
    p.add_argument("--seed-cache", type=Path, help="copy FILE into the dataset cache and exit")
    args = p.parse_args(argv)
    if args.seed_cache is None and (args.data is None or args.out is None):
        p.error("--data and --out are required (or --seed-cache FILE)")
    return args


def train_tokenizer(text: str, vocab_size: int) -> Tokenizer:
    if vocab_size < MIN_VOCAB:
        raise UsageError(
            f"--vocab-size {vocab_size}: must be at least {MIN_VOCAB} "
            "(256 byte tokens, special tokens and a few merges)"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer)
    return tokenizer


def split(text: str, validation_fraction: float) -> tuple[str, str]:
    if not 0 < validation_fraction < 1:
        raise UsageError(f"--validation-fraction {validation_fraction}: must be between 0 and 1")
    cut = int(len(text) * (1 - validation_fraction))
    newline = text.rfind("\n", 0, cut)
    cut = newline + 1 if newline > 0 else cut
    return text[:cut], text[cut:]


def encode(tokenizer: Tokenizer, text: str) -> np.ndarray:
    dtype = np.uint16 if tokenizer.get_vocab_size() <= 65536 else np.uint32
    lines = text.splitlines(keepends=True)
    ids: list[int] = []
    for batch in (lines[i : i + 4096] for i in range(0, len(lines), 4096)):
        for enc in tokenizer.encode_batch(batch, add_special_tokens=False):
            ids.extend(enc.ids)
    return np.asarray(ids, dtype=dtype)


def inputs_key(args: argparse.Namespace, data_sha: str) -> str:
    tok_sha = sha256_of(args.tokenizer) if args.tokenizer else None
    key = [FORMAT, data_sha, args.vocab_size, tok_sha, args.validation_fraction]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    corpus = fetch(args.data, args.sha256)
    data_sha = sha256_of(corpus)
    key = inputs_key(args, data_sha)
    out: Path = args.out
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        if manifest.get("inputs_key") == key:
            return manifest
    try:
        text = corpus.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--data {args.data}: not UTF-8 text ({exc})") from exc
    if not text.strip():
        raise UsageError(f"--data {args.data}: the corpus is empty")
    train_text, val_text = split(text, args.validation_fraction)
    if not val_text:
        raise UsageError(f"--data {args.data}: too small to hold out a validation split")
    if args.tokenizer:
        if not args.tokenizer.is_file():
            raise UsageError(f"--tokenizer {args.tokenizer}: no such file")
        tokenizer = Tokenizer.from_file(str(args.tokenizer))
    else:
        tokenizer = train_tokenizer(train_text, args.vocab_size)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    train_ids, val_ids = encode(tokenizer, train_text), encode(tokenizer, val_text)
    train_ids.tofile(out / "train.bin")
    val_ids.tofile(out / "val.bin")
    manifest = {
        "format": FORMAT,
        "inputs_key": key,
        "data_sha256": data_sha,
        "vocab_size": tokenizer.get_vocab_size(),
        "tokenizer_sha256": sha256_of(out / "tokenizer.json"),
        "dtype": str(train_ids.dtype),
        "train_tokens": len(train_ids),
        "val_tokens": len(val_ids),
        "train_bytes": len(train_text.encode()),
        "val_bytes": len(val_text.encode()),
    }
    write_json(manifest_path, manifest)
    return manifest


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.seed_cache:
        if not args.seed_cache.is_file():
            raise UsageError(f"--seed-cache {args.seed_cache}: no such file")
        print(json.dumps({"event": "cached", "path": str(seed_cache(args.seed_cache))}))
        return
    manifest = prepare(args)
    print(json.dumps({"event": "prepared", **manifest}), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
