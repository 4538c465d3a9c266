"""llmos-export: a version in another format, beside it (what `spec.export` does at training).

    llmos-export --version DIR --format gguf --type q8_0 [--out FILE]
    llmos-export --version DIR --format int8

gguf writes one GGUF file for llama.cpp (default DIR/model-TYPE.gguf); int8 adds the int8
variant DIR/int8 (compressed-tensors layout), which the evaluation stage and
`llmos-serve --quantization int8` load. The lineage records what was added and its size.
Exit status: 0; 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import get_args

from llmos_contract.config import GgufType

from llmos_runtime.errors import UsageError, exits_cleanly_on_usage_error
from llmos_runtime.version import INT8_DIR, LINEAGE_FILE, load_model, read_lineage, save_int8_variant, write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llmos-export", description=__doc__.split("\n")[0])
    p.add_argument("--version", type=Path, required=True, help="HF-format version directory")
    p.add_argument("--format", choices=["gguf", "int8"], required=True)
    p.add_argument("--type", choices=get_args(GgufType), default="q8_0", help="GGUF tensor type")
    p.add_argument("--out", type=Path, help="the GGUF file (default: VERSION/model-TYPE.gguf)")
    return p.parse_args(argv)


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not (args.version / "config.json").is_file():
        raise UsageError(f"--version {args.version}: not a model version (no config.json)")
    lineage = read_lineage(args.version)
    variants = lineage.setdefault("variants", {})
    if args.format == "gguf":
        from llmos_runtime.gguf_export import write_gguf

        out = args.out or args.version / f"model-{args.type}.gguf"
        write_gguf(args.version, out, args.type)
        name, path = f"gguf-{args.type}", out
    else:
        model = load_model(args.version)
        dtype = str(lineage.get("dtype", "float32"))
        tmp = args.version / f".{INT8_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_int8_variant(tmp, model, args.version / "tokenizer.json", dtype)
        shutil.rmtree(args.version / INT8_DIR, ignore_errors=True)
        tmp.rename(args.version / INT8_DIR)
        name, path = "int8", args.version / INT8_DIR / "model.safetensors"
    size = path.stat().st_size
    relative = str(path.parent.relative_to(args.version) if name == "int8" else path.name)
    if path.resolve().is_relative_to(args.version.resolve()):
        variants[name] = {"path": relative, "bytes": size}
        write_json(args.version / LINEAGE_FILE, lineage)
    print(json.dumps({"event": "exported", "variant": name, "path": str(path), "bytes": size}), flush=True)


if __name__ == "__main__":
    main()
