"""``export``: a finished run packaged for phones, edge devices or servers, and its formats compared."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tlcore.cli.output import EXIT_USER_ERROR, describe_table, emit, with_percents
from tlcore.deploy.export import EXPORT_FORMATS, built_exports, export_metadata, export_run
from tlcore.deploy.export_check import ExportCheck
from tlcore.errors import ConfigError, ExportError, StorageError

ALL = "all"
PERCENT_COLUMNS = ("accuracy", "studio accuracy", "agreement")


def cmd_export(args: argparse.Namespace) -> int:
    """Build each asked format (cached per run), copy the zips, and with ``--compare`` print the
    table of every format exported for the run: size, accuracy and agreement side by side."""
    names = list(EXPORT_FORMATS) if args.format == ALL else [args.format]
    compare = args.compare or args.json
    destination = _destination(args.out, len(names), copy=bool(args.out) or not compare)
    failed = []
    for name in names:
        try:
            built = export_run(args.run_id, name)
        except ExportError as exc:
            if len(names) == 1:
                raise
            failed.append(name)  # one format's refusal must not cost the others
            print(f"error: {name}: {exc}", file=sys.stderr)
            continue
        if destination is not None:
            _copy(built, destination, to_stderr=compare)
        if not compare:
            _describe_check(built, name if len(names) > 1 else "")
    if compare:
        rows = [export.row() for export in built_exports(args.run_id)]
        emit(args, rows, lambda rows: describe_table(with_percents(rows, *PERCENT_COLUMNS)))
    return EXIT_USER_ERROR if failed else 0


def _destination(out: str | None, formats: int, copy: bool) -> Path | None:
    """Where the zips go: ``--out`` (a file for one format, a folder for several), else here.

    Raises:
        ConfigError: Several formats and ``--out`` is not a folder.
    """
    if not copy:
        return None
    destination = Path(out).expanduser() if out else Path.cwd()
    if formats > 1 and not destination.is_dir():
        raise ConfigError(f"--format all writes one zip per format, and {destination} is not a folder.",
                          "Pass --out with an existing folder, or --compare alone to only compare.")
    return destination


def _copy(built: Path, destination: Path, to_stderr: bool) -> None:
    out = destination / built.name if destination.is_dir() else destination
    try:
        shutil.copyfile(built, out)
    except OSError as exc:
        raise StorageError(f"Could not write {out} ({exc.strerror or exc}).",
                           "Pass --out with a folder or file you can write to.") from exc
    print(out, file=sys.stderr if to_stderr else sys.stdout)


def _describe_check(built: Path, name: str) -> None:
    """The check on test images, on stderr: stdout carries only the written paths."""
    metadata = export_metadata(built) or {}
    prefix = f"{name}: " if name else ""
    if "check" in metadata:
        print(prefix + ExportCheck(**metadata["check"]).describe(), file=sys.stderr)
    elif "check_skipped" in metadata:
        print(f"{prefix}not checked on test images: {metadata['check_skipped']}", file=sys.stderr)


def register(verbs: argparse._SubParsersAction) -> None:
    export = verbs.add_parser(
        "export", help="package a finished run for phones, edge devices or servers; compare the formats")
    export.add_argument("run_id")
    export.add_argument("--format", default="tflite", choices=[*EXPORT_FORMATS, ALL],
                        help="tflite (float32), tflite_float16, tflite_quantized (8-bit weights), "
                             "tflite_int8 (full integer, uint8 in and out), onnx, saved_model, or all "
                             "(default: tflite)")
    export.add_argument("--out", help="file or folder for the zip; a folder with --format all "
                                      "(default: the current folder; with --compare, no copy)")
    export.add_argument("--compare", action="store_true",
                        help="print every format exported for the run side by side: model and zip "
                             "size, accuracy on the test images, agreement with the studio's model")
    export.add_argument("--json", action="store_true", help="the --compare table as JSON (implies --compare)")
    export.set_defaults(handler=cmd_export)
