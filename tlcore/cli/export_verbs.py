"""``export``: a finished run packaged for phones, edge devices or servers."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tlcore.deploy.export import EXPORT_FORMATS, export_metadata, export_run
from tlcore.deploy.export_check import ExportCheck
from tlcore.errors import StorageError


def cmd_export(args: argparse.Namespace) -> int:
    """Write the run's deployable zip (model, labels.txt, metadata.json) to ``--out``."""
    built = export_run(args.run_id, args.format)
    out = Path(args.out) if args.out else Path.cwd() / built.name
    if out.is_dir():
        out = out / built.name
    try:
        shutil.copyfile(built, out)
    except OSError as exc:
        raise StorageError(f"Could not write {out} ({exc.strerror or exc}).",
                           "Pass --out with a folder or file you can write to.") from exc
    print(out)
    metadata = export_metadata(built) or {}
    if "check" in metadata:
        print(ExportCheck(**metadata["check"]).describe(), file=sys.stderr)
    elif "check_skipped" in metadata:
        print(f"not checked on test images: {metadata['check_skipped']}", file=sys.stderr)
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    export = verbs.add_parser("export", help="package a finished run for phones, edge devices or servers")
    export.add_argument("run_id")
    export.add_argument("--format", default="tflite", choices=list(EXPORT_FORMATS),
                        help="tflite (float32), tflite_quantized (8-bit weights) or saved_model")
    export.add_argument("--out", help="file or folder for the zip (default: the current folder)")
    export.set_defaults(handler=cmd_export)
