"""What there is to train on: backbones, datasets, and one dataset's preview."""

from __future__ import annotations

import argparse
from typing import Any

from tlcore.cli.output import describe_rows, emit, json_verb
from tlcore.cli.spec_flags import add_section_arguments, dest
from tlcore.config import DatasetSpec, settings


def cmd_backbones(args: argparse.Namespace) -> int:
    from tlcore.backbones.catalogue import SIZE_RULE, describe_catalogue, describe_kerashub_presets

    if args.kerashub:  # which keras-hub presets are cached here, and which need a download
        emit(args, describe_kerashub_presets(), describe_rows)
        return 0

    def describe(rows: list[dict[str, Any]]) -> str:
        brief = [{k: v for k, v in row.items() if k not in ("weights", "size_rule")} for row in rows]
        return describe_rows(brief) + f"\nMobileNet and MobileNetV2: {SIZE_RULE}."

    emit(args, describe_catalogue(), describe)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from tlcore.data import COMMON_TFDS, builtin_datasets

    rows = [{"source": f"builtin:{n}", "description": d} for n, d in builtin_datasets().items()]
    rows += [{"source": f"tfds:{n}", "description": "TensorFlow Datasets (needs download or --data-dir)"}
             for n in COMMON_TFDS]
    emit(args, rows, describe_rows)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """Counts per class and split, warnings and fingerprint, as the Configure page shows them."""
    from tlcore.data.preview import preview_dataset
    from tlcore.runs.auditing import latest_audit_for_data
    from tlcore.runs.store import RunStore

    values = {name: getattr(args, dest("dataset", name)) for name in settings(DatasetSpec)}
    dataset = DatasetSpec(**{name: value for name, value in values.items() if value is not None})
    preview = preview_dataset(dataset.with_absolute_paths(), per_class=0)
    audit = latest_audit_for_data(RunStore(), preview.fingerprint)
    audited = {"audit_run": audit.run_id if audit else None,
               "audit_warnings": audit.warnings() if audit else []}
    emit(args, {**preview.to_dict(), **audited}, _describe_preview)
    return 0


def _describe_preview(payload: dict[str, Any]) -> str:
    lines = [f"{payload['images']:,} images in {len(payload['class_names'])} classes · "
             f"fingerprint {payload['fingerprint']}"]
    lines.append("class".ljust(24) + "".join(split.rjust(9) for split in payload["counts"]))
    for name in payload["class_names"]:
        cells = "".join(f"{counts[name]:>9,}" for counts in payload["counts"].values())
        lines.append(name[:23].ljust(24) + cells)
    lines += [f"warning: {warning}" for warning in payload["warnings"]]
    lines += [f"audit of run {payload['audit_run']}: {warning}" for warning in payload["audit_warnings"]]
    lines += [f"skipped: {skipped['id']}: {skipped['reason']}" for skipped in payload["skipped"]]
    if payload["unchecked"]:
        lines.append(f"{payload['unchecked']:,} image(s) not decoded by any run yet; unreadable ones show up "
                     "after the first run.")
    return "\n".join(lines)


def register(verbs: argparse._SubParsersAction) -> None:
    backbones = json_verb(verbs, "backbones", cmd_backbones, "list the backbone catalogue")
    backbones.add_argument("--kerashub", action="store_true",
                           help="list the keras-hub presets instead, with which need a download")
    json_verb(verbs, "datasets", cmd_datasets, "list builtin and common TFDS datasets")
    preview = json_verb(verbs, "preview", cmd_preview,
                        "a dataset's counts, warnings and fingerprint (no decoding)")
    add_section_arguments(preview, {"dataset": DatasetSpec})
