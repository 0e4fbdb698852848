"""``python -m tlcore``: everything the app does, from a terminal.

User errors (``TLError``) exit with code 2 and one line that says what to do; nothing a user
types produces a traceback.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import shutil
import sys
import time
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tqdm import tqdm

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, Setting, TrainSpec, settings
from tlcore.data.labels import visible_label
from tlcore.deploy.batch import BatchAnswer, classify_all, csv_rows, image_sources
from tlcore.deploy.export import EXPORT_FORMATS, export_metadata, export_run
from tlcore.deploy.export_check import ExportCheck
from tlcore.errors import ConfigError, RunStateError, StorageError, TLError
from tlcore.records import EpochRecord, RunArtifacts, RunRecord, RunStatus
from tlcore.report.paired import PairedComparison
from tlcore.report.summaries import comparison_rows, format_percent, rows_to_csv
from tlcore.runs.jobs import check_spec
from tlcore.runs.store import Claimant, RunStore
from tlcore.training.observer import BatchProgress, TrainingObserver

EXIT_USER_ERROR = 2
FOLLOW_POLL_S = 1.0

SPEC_SECTIONS: dict[str, type] = {"dataset": DatasetSpec, "backbone": BackboneSpec, "train": TrainSpec}
# Short names documented before every field had a flag; they keep working.
ALIASES = {
    "dataset.source": ("--dataset",), "backbone.name": ("--backbone",), "train.learning_rate": ("--lr",),
    "train.fine_tune_learning_rate": ("--fine-tune-lr",), "train.early_stopping_patience": ("--patience",),
    "train.augmentations": ("--augment",),
}
REQUIRED = ("dataset.source", "backbone.name", "train.strategy", "train.epochs")
_KIND_WORDS = {int: "a whole number", float: "a number"}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose complaints are user errors: one line and exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message if message.endswith(".") else f"{message}.", f"See `{self.prog} --help`.")


def spec_flag(section: str, name: str) -> str:
    """The flag of a spec field, named after it: ``--image-size``.

    A field named like a part of :class:`RunSpec` (``name``, the run's label) is prefixed with its
    section: ``--backbone-name``. A name shared by two sections (``seed``) is one flag for both.
    """
    clashes = name in {f.name for f in dataclasses.fields(RunSpec)}
    return "--" + (f"{section}_{name}" if clashes else name).replace("_", "-")


def _dest(section: str, name: str) -> str:
    return spec_flag(section, name)[2:].replace("-", "_")


def _checked(info: Setting, value: Any) -> Any:
    try:
        info.check(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _converter(info: Setting, kind: type) -> Callable[[str], Any]:
    """Text to ``kind``, checked against the field's bound and choices as ``validate()`` does."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{info.label} must be {_KIND_WORDS.get(kind, kind.__name__)}, got {text!r}.") from None
        return _checked(info, value)

    return convert


def _items_converter(info: Setting) -> Callable[[str], list[str]]:
    """A comma list (``flip,zoom``) to checked items; repeated flags add up."""

    def convert(text: str) -> list[str]:
        return list(_checked(info, tuple(item.strip() for item in text.split(",") if item.strip())))

    return convert


def _value_options(info: Setting, hint: Any) -> dict[str, Any]:
    """``add_argument`` options for a field of type ``hint``: booleans get ``--x/--no-x``."""
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        return {"type": _items_converter(info), "action": "extend", "metavar": "NAME[,NAME...]"}
    optional = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    kind = optional[0] if typing.get_origin(hint) is types.UnionType else hint
    return {"type": _converter(info, kind), "choices": info.choices or None}


def _help(info: Setting, default: Any, required: bool) -> str:
    parts = [info.help or info.label]
    if info.bound is not None:
        parts.append(info.bound.describe() + (f" {info.unit}" if info.unit else ""))
    if info.choices and isinstance(default, tuple):
        parts.append(f"comma list or repeated, from {', '.join(info.choices)}")
    if not required and default is not None:
        parts.append(f"default: {','.join(default) or 'none' if isinstance(default, tuple) else default}")
    return "; ".join(parts).replace("%", "%%")


def _add_spec_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """A flag for every field of the three specs, with its bound, choices and default."""
    _add_section_arguments(parser, SPEC_SECTIONS, skip)
    parser.add_argument("--name", default="", help="a label for people; not part of the run's settings")
    parser.add_argument("--force", action="store_true", help="train again even if an equal run finished")
    parser.add_argument("--json", action="store_true")


def _add_section_arguments(
    parser: argparse.ArgumentParser, sections: dict[str, type], skip: tuple[str, ...] = ()
) -> None:
    seen: set[str] = set()
    for section, spec_class in sections.items():
        hints, defaults = typing.get_type_hints(spec_class), spec_class()
        for name, info in settings(spec_class).items():
            key, flag = f"{section}.{name}", spec_flag(section, name)
            if key in skip or flag in seen:
                continue
            seen.add(flag)
            required = key in REQUIRED
            parser.add_argument(flag, *ALIASES.get(key, ()), dest=_dest(section, name), default=None,
                                required=required, help=_help(info, getattr(defaults, name), required),
                                **_value_options(info, hints[name]))


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """The run the flags describe; a flag left out keeps the spec's default."""
    given = vars(args)
    parts = {}
    for section, spec_class in SPEC_SECTIONS.items():
        values = {name: given.get(_dest(section, name)) for name in settings(spec_class)}
        parts[section] = spec_class(**{name: tuple(value) if isinstance(value, list) else value
                                       for name, value in values.items() if value is not None})
    weights = args.weights or ("none" if args.strategy == "scratch" else "imagenet")
    spec = RunSpec(dataset=parts["dataset"], backbone=dataclasses.replace(parts["backbone"], weights=weights),
                   train=parts["train"], name=args.name)
    return check_spec(spec.with_absolute_paths())  # a typed relative path means this folder


def _skipped_files(store: RunStore, run: RunRecord) -> list[dict[str, str]] | None:
    """Files the run's decode pass could not read, once it has recorded its data."""
    from tlcore.runs.data_identity import DATA_FILE

    try:
        return list(store.read_json(run.id, DATA_FILE).get("skipped", []))
    except TLError:  # not trained yet, or a run from before data.json
        return None


def run_payload(store: RunStore, run: RunRecord) -> dict[str, Any]:
    """The JSON shape of ``train --json`` and ``show --json``."""
    payload: dict[str, Any] = {
        "run_id": run.id,
        "status": run.status,
        "error": run.error,
        "worker_pid": run.worker_pid,
        "spec": run.spec.to_dict(),
        "data_fingerprint": run.data_fingerprint or None,
        "skipped_files": _skipped_files(store, run),
        "notes": run.notes,
        "duration": run.duration,
        "history": [e.to_dict() for e in store.epochs(run.id)],
        "class_names": None,
        "test": None,
    }
    if store.model_path(run.id).exists():
        report = store.read_json(run.id, RunArtifacts.REPORT)
        payload["class_names"] = report["class_names"]
        payload["test"] = {
            "accuracy": report["accuracy"],
            "top_k_accuracy": report["top_k_accuracy"],
            "macro": report["macro"],
            "per_class": report["per_class"],
            "confusion": report["confusion"],
        }
    return payload


class _EpochBar(TrainingObserver):
    """A tqdm bar over all batches of all epochs, with the last epoch's metrics."""

    def __init__(self, total_epochs: int, enabled: bool) -> None:
        self.total_epochs = total_epochs
        self.bar: tqdm | None = None
        self.enabled = enabled
        self.done = 0

    def on_batch(self, progress: BatchProgress) -> None:
        batch, steps = progress.batch, progress.steps
        if not self.enabled or not steps:
            return
        if self.bar is None:
            self.bar = tqdm(total=self.total_epochs * steps, unit="batch", file=sys.stderr)
        self.bar.n = self.done * steps + batch
        self.bar.refresh()

    def on_epoch(self, record: EpochRecord) -> None:
        self.done = record.epoch
        if self.bar is not None:
            self.bar.set_postfix(epoch=record.epoch, acc=f"{record.accuracy:.3f}",
                                 val_acc=f"{record.val_accuracy:.3f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import create_for_data, reap
    from tlcore.runs.runner import execute_run

    store = RunStore()
    spec = spec_from_args(args)
    reap(store)
    # Inserted already claimed: a dispatcher must never find this run queued and start a worker.
    run, reused, change = create_for_data(store, spec, force=args.force, claimant=Claimant.current())
    if change:
        _say(args, change)
    if reused and run.is_active:
        _say(args, f"An equal run {run.id} is {run.status}; following it.")
        run = _follow(store, run.id)
    elif not reused:
        bar = _EpochBar(spec.train.total_epochs, enabled=True)
        try:
            run = execute_run(store, run.id, observer=bar, reraise_user_errors=True)
        finally:
            bar.close()
    else:
        _say(args, f"Reusing finished run {run.id} (same settings, same data); pass --force to retrain.")
    payload = {**run_payload(store, run), "cached": reused}
    _emit(args, payload, _describe_run)
    return 0 if run.status in (RunStatus.FINISHED, RunStatus.STOPPED) else 1


def _follow(store: RunStore, run_id: str) -> RunRecord:
    from tlcore.runs.jobs import reap

    while (run := store.get(run_id)).is_active:
        time.sleep(FOLLOW_POLL_S)
        reap(store)
    return run


def cmd_submit(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import submit

    submission = submit(spec_from_args(args), force=args.force)
    run = submission.run
    store = RunStore()
    if submission.data_change:
        _say(args, submission.data_change)
    payload = {
        "run_id": run.id, "status": run.status, "cached": submission.reused,
        "queue_position": store.queue_position(run.id), "data_fingerprint": run.data_fingerprint,
    }
    _emit(args, payload, lambda p: f"{p['run_id']} {p['status']}" + (" (reused)" if p["cached"] else ""))
    return 0


def cmd_classic(args: argparse.Namespace) -> int:
    """Queue scratch vs frozen vs frozen-then-fine-tune on the same data, backbone and budget."""
    from tlcore.runs.experiments import classic_experiment
    from tlcore.runs.jobs import submit

    store = RunStore()
    runs = [submit(spec, store, force=args.force).run for spec in classic_experiment(spec_from_args(args))]
    if args.wait:
        runs = [_follow(store, run.id) for run in runs]
    _emit(args, [_run_row(r) for r in runs], _describe_rows)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import reap

    store = RunStore()
    if not store.read_only:  # a read-only store is listed as it is: dead workers stay unrecorded
        reap(store)
    _emit(args, [_run_row(r) for r in store.list_runs()],
          lambda rows: _describe_rows(_with_percents(rows, "test_accuracy")))
    return 0


def _with_percents(rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    """Rows for people: accuracies as the app shows them (``96.7%``, ``—`` for none).

    Only the text output: JSON and CSV keep the numbers, for programs.
    """
    return [{**row, **{column: format_percent(row[column]) for column in columns}} for row in rows]


def _run_row(run: RunRecord) -> dict[str, Any]:
    """One line of ``runs`` and ``classic``: what people compare runs by."""
    summary = run.summary
    return {
        "run_id": run.id, "status": run.status, "strategy": run.spec.train.strategy,
        "backbone": run.spec.backbone.name, "dataset": run.spec.dataset.source,
        "epochs": run.spec.train.total_epochs, "test_accuracy": summary and summary.test_accuracy,
        "train_seconds": summary and summary.train_seconds, "name": run.name,
    }


def cmd_show(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import reap

    store = RunStore()
    if not store.read_only:  # a read-only store is listed as it is: dead workers stay unrecorded
        reap(store)
    _emit(args, run_payload(store, store.get(args.run_id)), _describe_run)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """The Compare page's test-metrics table (and its CSV download) for the runs named."""
    store = RunStore()
    runs = [store.get(run_id) for run_id in args.run_ids]
    # A stopped run has results when it finished an epoch; a finished one always counts.
    unfinished = [run for run in runs if run.status != RunStatus.FINISHED and run.summary is None]
    if unfinished:
        raise RunStateError(
            "Only finished runs (or runs stopped after an epoch) have test metrics to compare: "
            + ", ".join(f"{run.id} is {run.status}" for run in unfinished) + ".",
            "Wait for them to finish (`python -m tlcore show RUN`) or leave them out.",
        )
    if args.paired:
        return _compare_paired(args, store, runs)
    rows = comparison_rows(runs)
    if args.csv:
        print(rows_to_csv(_visible(rows)), end="")
    else:
        _emit(args, rows,
              lambda rows: _describe_table(_with_percents(rows, "test accuracy", "best val accuracy")))
    return 0


def _compare_paired(args: argparse.Namespace, store: RunStore, runs: list[RunRecord]) -> int:
    """Two runs image by image: accuracy intervals, fixed and broken images, McNemar's test."""
    from tlcore.runs.pairing import pair_runs, paired_payload

    if len(runs) != 2:
        raise ConfigError(f"--paired compares exactly two runs, got {len(runs)}.",
                          "Name two runs: `python -m tlcore compare A B --paired`.")
    comparison = pair_runs(store, *runs)
    _emit(args, paired_payload(comparison), lambda payload: _describe_paired(comparison))
    return 0


def _describe_paired(comparison: PairedComparison) -> str:
    lines = [comparison.sentence()]
    for label, interval in zip(comparison.labels, comparison.accuracy, strict=True):
        lines.append(f"  {label}: accuracy {interval.value:.1%} (95 % interval {interval.low:.1%} to "
                     f"{interval.high:.1%})")
    lines.append(f"  {'class':<20} {'F1 A':>7} {'F1 B':>7} {'delta':>7}")
    lines += [f"  {delta.name[:20]:<20} {delta.f1[0]:>7.3f} {delta.f1[1]:>7.3f} {delta.f1_delta:>+7.3f}"
              for delta in comparison.per_class]
    lines.append(f"  {len(comparison.disagreements)} image(s) answered differently.")
    return _visible("\n".join(lines))


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


def cmd_predict(args: argparse.Namespace) -> int:
    from tlcore.deploy.serving import check_threshold, load_run
    from tlcore.report.evaluate import check_top_k

    check_threshold(args.threshold)  # before the model loads: a typo fails fast
    runs = [load_run(run_id) for run_id in dict.fromkeys(args.run_id.split(","))]
    if args.explain is not None and len(runs) > 1:
        raise ConfigError("--explain takes one run.", "Explain with each run in turn.")
    for loaded in runs:
        if args.top_k is not None:  # once, as one line, rather than as every image's error
            check_top_k(args.top_k, len(loaded.class_names))
    answers = classify_all(runs, image_sources(args.images), top_k=args.top_k, threshold=args.threshold)
    if args.csv:
        return _predictions_csv(answers)
    results, failed = [], False
    for answer in answers:
        row = _prediction_row(answer, several=len(runs) > 1)
        failed = failed or "error" in row
        if args.explain is not None and "error" not in row:
            try:
                row["explanation"] = str(_explain_one(runs[0], answer.image, Path(args.explain)))
            except TLError as exc:
                row, failed = {"image": answer.image, "error": str(exc)}, True
        results.append(row)
    _emit(args, results, _describe_predictions)
    return EXIT_USER_ERROR if failed else 0


def _prediction_row(answer: BatchAnswer, several: bool) -> dict[str, Any]:
    """One image's answer as ``predict --json`` prints it (with its run when several answer)."""
    row: dict[str, Any] = {"image": answer.image}
    if several:
        row["run"] = answer.run_id
    if answer.error is not None:
        return {**row, "error": answer.error}
    return {**row, "answer": answer.answer,
            "predictions": [{"label": label, "probability": p} for label, p in answer.top]}


def _predictions_csv(answers: Iterable[BatchAnswer]) -> int:
    """Stream one CSV row per image and run (10,000 images never wait for the last one)."""
    writer, failed, rows = csv.writer(sys.stdout), False, csv_rows(answers)
    writer.writerow(next(rows))
    for row in rows:
        failed = failed or bool(row[-1])  # the error column
        writer.writerow(_visible(row))
    return EXIT_USER_ERROR if failed else 0


def _explain_one(loaded: Any, image: str, folder: Path) -> Path:
    """Write the Grad-CAM (or saliency) overlay of ``image``'s predicted class into ``folder``."""
    from tlcore.report.explain import explain, write_overlay

    with loaded.lock:
        explanation = explain(loaded.model, loaded.class_names, [image], loaded.image_size)[0]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return write_overlay(folder, image, loaded.run_id, explanation)
    except OSError as exc:
        raise StorageError(f"Could not write the explanation into {folder} ({exc.strerror or exc}).",
                           "Pass --explain a folder you can write to.") from exc


def cmd_cancel(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import cancel

    run = cancel(args.run_id)
    print(f"{run.id} {run.status}" + (" (stops at its next batch)" if run.is_active else ""))
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from tlcore.backbones.catalogue import SIZE_RULE, describe_catalogue

    def describe(rows: list[dict[str, Any]]) -> str:
        brief = [{k: v for k, v in row.items() if k not in ("weights", "size_rule")} for row in rows]
        return _describe_rows(brief) + f"\nMobileNet and MobileNetV2: {SIZE_RULE}."

    _emit(args, describe_catalogue(), describe)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from tlcore.data import COMMON_TFDS, builtin_datasets

    rows = [{"source": f"builtin:{n}", "description": d} for n, d in builtin_datasets().items()]
    rows += [{"source": f"tfds:{n}", "description": "TensorFlow Datasets (needs download or --data-dir)"}
             for n in COMMON_TFDS]
    _emit(args, rows, _describe_rows)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import resume

    run = resume(args.run_id)
    print(f"{run.id} {run.status} (continues after its last finished epoch)")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import run_worker

    return run_worker(args.run_id)


def cmd_delete(args: argparse.Namespace) -> int:
    RunStore().delete(args.run_id)
    print(f"deleted {args.run_id}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """Counts per class and split, warnings and fingerprint, as the Configure page shows them."""
    from tlcore.data.preview import preview_dataset

    values = {name: getattr(args, _dest("dataset", name)) for name in settings(DatasetSpec)}
    dataset = DatasetSpec(**{name: value for name, value in values.items() if value is not None})
    preview = preview_dataset(dataset.with_absolute_paths(), per_class=0)
    _emit(args, preview.to_dict(), _describe_preview)
    return 0


def _describe_preview(payload: dict[str, Any]) -> str:
    lines = [f"{payload['images']:,} images in {len(payload['class_names'])} classes · "
             f"fingerprint {payload['fingerprint']}"]
    lines.append("class".ljust(24) + "".join(split.rjust(9) for split in payload["counts"]))
    for name in payload["class_names"]:
        cells = "".join(f"{counts[name]:>9,}" for counts in payload["counts"].values())
        lines.append(name[:23].ljust(24) + cells)
    lines += [f"warning: {warning}" for warning in payload["warnings"]]
    lines += [f"skipped: {skipped['id']}: {skipped['reason']}" for skipped in payload["skipped"]]
    if payload["unchecked"]:
        lines.append(f"{payload['unchecked']:,} image(s) not decoded by any run yet; unreadable ones show up "
                     "after the first run.")
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the store, run folders and caches; ``--rebuild`` lists the run folders again."""
    from tlcore.runs import doctor

    if args.rebuild:
        print(doctor.rebuild().describe())
    checkup = doctor.check()
    print(checkup.describe())
    return 0 if checkup.healthy else 1


def _add_spec_verbs(verbs: argparse._SubParsersAction) -> None:
    """``train``, ``submit`` and ``classic``: the verbs that take a flag per spec field."""
    for name, handler, help_text in (
        ("train", cmd_train, "train in the foreground with a progress bar"),
        ("submit", cmd_submit, "queue a run for a background worker"),
    ):
        sub = verbs.add_parser(name, help=help_text)
        _add_spec_arguments(sub)
        sub.set_defaults(handler=handler)
    classic = verbs.add_parser(
        "classic", help="queue scratch vs frozen vs frozen_then_finetune with one budget")
    _add_spec_arguments(classic, skip=("train.strategy",))  # the experiment sets the three strategies
    classic.add_argument("--wait", action="store_true", help="wait for the three runs and print a table")
    classic.set_defaults(handler=cmd_classic, strategy="frozen")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tlcore", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    _add_spec_verbs(verbs)
    for name, handler, help_text in (
        ("runs", cmd_runs, "list runs"),
        ("backbones", cmd_backbones, "list the backbone catalogue"),
        ("datasets", cmd_datasets, "list builtin and common TFDS datasets"),
    ):
        sub = verbs.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=handler)
    for name, handler, help_text in (
        ("show", cmd_show, "show one run"),
        ("cancel", cmd_cancel, "stop a queued or running run"),
        ("resume", cmd_resume, "queue a failed or stopped run again, from its last epoch"),
        ("worker", cmd_worker, "(internal) train a queued run"),
        ("delete", cmd_delete, "delete a finished run and its artifacts"),
    ):
        sub = verbs.add_parser(name, help=help_text)
        sub.add_argument("run_id")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=handler)
    compare = verbs.add_parser("compare", help="finished runs' test metrics side by side")
    compare.add_argument("run_ids", nargs="+", metavar="run_id")
    output = compare.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true", help="the table as CSV, as the app's download")
    compare.add_argument("--paired", action="store_true",
                         help="two runs image by image: accuracy intervals, McNemar's exact test")
    compare.set_defaults(handler=cmd_compare)
    export = verbs.add_parser("export", help="package a finished run for phones, edge devices or servers")
    export.add_argument("run_id")
    export.add_argument("--format", default="tflite", choices=list(EXPORT_FORMATS),
                        help="tflite (float32), tflite_quantized (8-bit weights) or saved_model")
    export.add_argument("--out", help="file or folder for the zip (default: the current folder)")
    export.set_defaults(handler=cmd_export)
    predict = verbs.add_parser("predict", help="classify images with a finished run")
    predict.add_argument("run_id", help="a run id, or several separated by commas (RUN,RUN)")
    predict.add_argument("images", nargs="+", help="image files, folders (walked) or zips")
    predict.add_argument("--csv", action="store_true", help="one CSV row per image and run, streamed")
    predict.add_argument("--top-k", type=int, default=None,
                         help="labels per image, 1 to the number of classes (default: up to 3)")
    predict.add_argument("--threshold", type=float, default=None,
                         help="confidence from 0 to 1: below it the answer is 'not sure' (JSON: "
                              "answer null) instead of the most likely class (default: off)")
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--explain", metavar="DIR", default=None,
                         help="also write a Grad-CAM overlay PNG per image into DIR")
    predict.set_defaults(handler=cmd_predict)
    preview = verbs.add_parser("preview", help="a dataset's counts, warnings and fingerprint (no decoding)")
    _add_section_arguments(preview, {"dataset": DatasetSpec})
    preview.add_argument("--json", action="store_true")
    preview.set_defaults(handler=cmd_preview)
    doctor = verbs.add_parser("doctor", help="check the run store, run folders and caches")
    doctor.add_argument("--rebuild", action="store_true",
                        help="rebuild the run list from the run folders (a damaged store is kept aside)")
    doctor.set_defaults(handler=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except TLError as exc:
        print(f"error: {visible_label(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _say(args: argparse.Namespace, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout)


def _emit(args: argparse.Namespace, payload: Any, describe: Callable[[Any], str]) -> None:
    if args.json:  # strict JSON: a diverged run's NaN or infinite metric is null
        print(json.dumps(_finite(payload), indent=1, default=str, allow_nan=False))
    else:
        print(describe(_visible(payload)))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _visible(payload: Any) -> Any:
    """``payload`` with invisible characters of every string spelled out (JSON escapes its own).

    Class and run names come from datasets, hub models and people: raw, a line break or a
    right-to-left override in one would show a terminal another table than the real one.
    """
    if isinstance(payload, str):
        return visible_label(payload)
    if isinstance(payload, dict):
        return {key: _visible(value) for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [_visible(value) for value in payload]
    return payload


def _describe_run(p: dict[str, Any]) -> str:
    lines = [f"run {p['run_id']}: {p['status']}" + (f" - {p['error']}" if p.get("error") else "")]
    lines += [f"  note: {n}" for n in p.get("notes", [])]
    for e in p["history"]:
        lines.append(
            f"  epoch {e['epoch']:>3} [{e['stage']}] loss {e['loss']:.4f} acc {e['accuracy']:.3f}"
            f" val_loss {e['val_loss']:.4f} val_acc {e['val_accuracy']:.3f}"
            f" ({e['seconds']:.1f}s, {e['images_per_second']:.0f} img/s)"
        )
    if p.get("test"):
        lines.append(f"  test accuracy {p['test']['accuracy']:.3f}, macro F1 {p['test']['macro']['f1']:.3f}")
    return "\n".join(lines)


def _describe_rows(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    keys = list(rows[0])
    return "\n".join("  ".join(f"{k}={r.get(k)}" for k in keys) for r in rows)


def _describe_table(rows: list[dict[str, Any]]) -> str:
    """Rows as aligned columns: a comparison is read across, unlike the ``key=value`` lists."""
    import pandas as pd

    return pd.DataFrame(rows).to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.4g}")


def _describe_predictions(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        run = f" [{r['run']}]" if "run" in r else ""
        if "error" in r:
            lines.append(f"{r['image']}{run}: error: {r['error']}")
        else:
            tops = ", ".join(f"{p['label']} {p['probability']:.2f}" for p in r["predictions"])
            lines.append(f"{r['image']}{run}: " + (tops if r["answer"] is not None else f"not sure ({tops})"))
            if "explanation" in r:
                lines.append(f"  explanation: {r['explanation']}")
    return "\n".join(lines)
