"""llmos-export: a version in another format, beside it (what `spec.export` does at training).

    llmos-export --version DIR --format gguf --type q8_0 [--out FILE]
    llmos-export --version DIR --format int8

gguf writes one GGUF file for llama.cpp (default DIR/model-TYPE.gguf); int8 adds the int8
variant DIR/int8 (compressed-tensors layout), which `llmos-serve --quantization int8` loads
and which is evaluated like every variant. Both are written to a temporary name first and
moved into place whole; the lineage records what was added and its size. A version that
already has an int8 variant keeps it (its verdict was given on those weights).
Exit status: 0; 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import get_args

from llmos_contract.config import GgufType

from llmos_runtime.errors import UsageError, exits_cleanly_on_usage_error
from llmos_runtime.version import (
    INT8_DIR,
    LINEAGE_FILE,
    WEIGHTS_FILE,
    load_model,
    read_lineage,
    save_int8_variant,
    write_json,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llmos-export", description=__doc__.split("\n")[0])
    p.add_argument("--version", type=Path, required=True, help="HF-format version directory")
    p.add_argument("--format", choices=["gguf", "int8"], required=True)
    p.add_argument("--type", choices=get_args(GgufType), help="GGUF tensor type (default q8_0)")
    p.add_argument("--out", type=Path, help="the GGUF file (default: VERSION/model-TYPE.gguf)")
    return p.parse_args(argv)


def export_gguf(version: Path, kind: GgufType, out: Path) -> Path:
    from llmos_runtime.gguf_export import write_gguf  # the gguf package only where GGUF is asked for

    tmp = out.with_name(f".{out.name}.tmp")
    write_gguf(version, tmp, kind)
    os.replace(tmp, out)
    return out


def export_int8(version: Path) -> Path:
    if (version / INT8_DIR).exists():
        raise UsageError(f"--version {version}: already has an int8 variant ({version / INT8_DIR})")
    lineage = read_lineage(version)
    tmp = version / f".{INT8_DIR}.tmp"
    save_int8_variant(tmp, load_model(version), version / "tokenizer.json", str(lineage.get("dtype", "float32")))
    tmp.rename(version / INT8_DIR)
    return version / INT8_DIR / WEIGHTS_FILE


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not (args.version / "config.json").is_file():
        raise UsageError(f"--version {args.version}: not a model version (no config.json)")
    if args.format == "int8" and (args.type or args.out):
        raise UsageError("--type and --out are for --format gguf (the int8 variant is VERSION/int8)")
    if args.format == "gguf":
        kind: GgufType = args.type or "q8_0"
        path = export_gguf(args.version, kind, args.out or args.version / f"model-{kind}.gguf")
        name, recorded = f"gguf-{kind}", path.name
        beside = path.resolve().parent == args.version.resolve()  # a file elsewhere is not the version's
    else:
        path, name, recorded, beside = export_int8(args.version), "int8", INT8_DIR, True
    size = path.stat().st_size
    if beside:
        lineage = read_lineage(args.version)
        lineage.setdefault("variants", {})[name] = {"path": recorded, "bytes": size}
        write_json(args.version / LINEAGE_FILE, lineage)
    print(json.dumps({"event": "exported", "variant": name, "path": str(path), "bytes": size}), flush=True)


if __name__ == "__main__":
    main()
