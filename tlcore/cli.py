"""``python -m tlcore``: everything the app does, from a terminal.

User errors (``TLError``) exit with code 2 and one line that says what to do; nothing a user
types produces a traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from tlcore.config import STRATEGIES, BackboneSpec, DatasetSpec, RunSpec, TrainSpec
from tlcore.errors import RunStateError, StorageError, TLError
from tlcore.deploy.export import EXPORT_FORMATS, export_metadata, export_run
from tlcore.deploy.export_check import ExportCheck
from tlcore.runs.jobs import check_spec
from tlcore.records import EpochRecord, RunArtifacts, RunRecord, RunStatus
from tlcore.runs.store import RunStore
from tlcore.report.summaries import comparison_rows, rows_to_csv

EXIT_USER_ERROR = 2
FOLLOW_POLL_S = 1.0


def _add_spec_arguments(parser: argparse.ArgumentParser, with_strategy: bool = True) -> None:
    defaults_d, defaults_t = DatasetSpec(), TrainSpec()
    parser.add_argument("--dataset", required=True, help="builtin:shapes, tfds:NAME, folder:PATH or zip:PATH")
    parser.add_argument("--backbone", required=True, help="catalogue name (see `backbones`) or hub:URL_OR_FOLDER")
    parser.add_argument("--alpha", type=float, default=None, help="MobileNet width multiplier")
    parser.add_argument("--weights", default=None, help="imagenet | none | PATH (default: imagenet; none for scratch)")
    if with_strategy:
        parser.add_argument("--strategy", required=True, choices=STRATEGIES)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--fine-tune-epochs", type=int, default=defaults_t.fine_tune_epochs)
    parser.add_argument("--fine-tune-layers", type=int, default=None)
    parser.add_argument("--fine-tune-fraction", type=float, default=defaults_t.fine_tune_fraction)
    parser.add_argument("--image-size", type=int, default=defaults_d.image_size)
    parser.add_argument("--batch-size", type=int, default=defaults_t.batch_size)
    parser.add_argument("--subset", type=float, default=defaults_d.subset)
    parser.add_argument("--seed", type=int, default=defaults_t.seed)
    parser.add_argument("--lr", type=float, default=defaults_t.learning_rate)
    parser.add_argument("--fine-tune-lr", type=float, default=defaults_t.fine_tune_learning_rate)
    parser.add_argument("--optimizer", default=defaults_t.optimizer)
    parser.add_argument("--label-smoothing", type=float, default=defaults_t.label_smoothing)
    parser.add_argument("--class-weights", action="store_true")
    parser.add_argument("--patience", type=int, default=0, help="early-stopping patience (0: off)")
    parser.add_argument("--dropout", type=float, default=defaults_t.dropout)
    parser.add_argument("--augment", default="", help="comma list of flip,rotation,zoom,contrast,translation")
    parser.add_argument("--val-fraction", type=float, default=defaults_d.val_fraction)
    parser.add_argument("--test-fraction", type=float, default=defaults_d.test_fraction)
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir (prepared data works offline)")
    parser.add_argument("--name", default="")
    parser.add_argument("--force", action="store_true", help="train again even if an equal run finished")
    parser.add_argument("--json", action="store_true")


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    weights = args.weights or ("none" if args.strategy == "scratch" else "imagenet")
    spec = RunSpec(
        dataset=DatasetSpec(
            source=args.dataset, subset=args.subset, image_size=args.image_size,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction,
            seed=args.seed, data_dir=args.data_dir,
        ),
        backbone=BackboneSpec(name=args.backbone, alpha=args.alpha, weights=weights),
        train=TrainSpec(
            strategy=args.strategy, epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs,
            fine_tune_layers=args.fine_tune_layers, fine_tune_fraction=args.fine_tune_fraction,
            learning_rate=args.lr, fine_tune_learning_rate=args.fine_tune_lr,
            batch_size=args.batch_size, optimizer=args.optimizer,
            label_smoothing=args.label_smoothing, class_weights=args.class_weights,
            early_stopping_patience=args.patience, dropout=args.dropout,
            augmentations=tuple(a.strip() for a in args.augment.split(",") if a.strip()),
            seed=args.seed,
        ),
        name=args.name,
    )
    return check_spec(spec)


def run_payload(store: RunStore, run: RunRecord) -> dict[str, Any]:
    """The JSON shape of ``train --json`` and ``show --json``."""
    payload: dict[str, Any] = {
        "run_id": run.id,
        "status": run.status,
        "error": run.error,
        "worker_pid": run.worker_pid,
        "spec": run.spec.to_dict(),
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


class _EpochBar:
    """A tqdm bar over all batches of all epochs, with the last epoch's metrics."""

    def __init__(self, total_epochs: int, enabled: bool) -> None:
        self.total_epochs = total_epochs
        self.bar: tqdm | None = None
        self.enabled = enabled
        self.done = 0

    def on_batch(self, batch: int, steps: int) -> None:
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
    from tlcore.runs.jobs import claim_for_this_process, reap
    from tlcore.runs.runner import execute_run

    store = RunStore()
    spec = spec_from_args(args)
    reap(store)
    run, reused = store.create_run(spec, force=args.force)
    if reused and run.is_active:
        _say(args, f"An equal run {run.id} is {run.status}; following it.")
        run = _follow(store, run.id)
    elif not reused:
        claim_for_this_process(store, run.id)
        bar = _EpochBar(spec.train.total_epochs, enabled=True)
        try:
            run = execute_run(store, run.id, on_batch=bar.on_batch, on_epoch=bar.on_epoch,
                              reraise_user_errors=True)
        finally:
            bar.close()
    else:
        _say(args, f"Reusing finished run {run.id} (same settings); pass --force to retrain.")
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
    payload = {
        "run_id": run.id, "status": run.status, "cached": submission.reused,
        "queue_position": store.queue_position(run.id),
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
    reap(store)
    _emit(args, [_run_row(r) for r in store.list_runs()], _describe_rows)
    return 0


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
    reap(store)
    _emit(args, run_payload(store, store.get(args.run_id)), _describe_run)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """The Compare page's test-metrics table (and its CSV download) for the runs named."""
    store = RunStore()
    runs = [store.get(run_id) for run_id in args.run_ids]
    unfinished = [run for run in runs if run.status != RunStatus.FINISHED]
    if unfinished:
        raise RunStateError(
            "Only finished runs have test metrics to compare: "
            + ", ".join(f"{run.id} is {run.status}" for run in unfinished) + ".",
            "Wait for them to finish (`python -m tlcore show RUN`) or leave them out.",
        )
    rows = comparison_rows(runs)
    if args.csv:
        print(rows_to_csv(rows), end="")
    else:
        _emit(args, rows, _describe_table)
    return 0


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
    from tlcore.deploy.serving import load_run

    loaded = load_run(args.run_id)
    results, failed = [], False
    for image in args.images:
        try:
            predictions = loaded.predict([image], top_k=args.top_k)[0]
            results.append({"image": image, "predictions": [
                {"label": p.label, "probability": p.probability} for p in predictions]})
        except TLError as exc:
            failed = True
            results.append({"image": image, "error": str(exc)})
    _emit(args, results, _describe_predictions)
    return EXIT_USER_ERROR if failed else 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import cancel

    run = cancel(args.run_id)
    print(f"{run.id} {run.status}" + (" (stops at its next batch)" if run.is_active else ""))
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from tlcore.backbones import describe_catalogue

    _emit(args, describe_catalogue(), _describe_rows)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tlcore", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name, handler, help_text in (
        ("train", cmd_train, "train in the foreground with a progress bar"),
        ("submit", cmd_submit, "queue a run for a background worker"),
    ):
        sub = verbs.add_parser(name, help=help_text)
        _add_spec_arguments(sub)
        sub.set_defaults(handler=handler)
    classic = verbs.add_parser(
        "classic", help="queue scratch vs frozen vs frozen_then_finetune with one budget")
    _add_spec_arguments(classic, with_strategy=False)
    classic.add_argument("--wait", action="store_true", help="wait for the three runs and print a table")
    classic.set_defaults(handler=cmd_classic, strategy="frozen")
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
    compare.set_defaults(handler=cmd_compare)
    export = verbs.add_parser("export", help="package a finished run for phones, edge devices or servers")
    export.add_argument("run_id")
    export.add_argument("--format", default="tflite", choices=list(EXPORT_FORMATS),
                        help="tflite (float32), tflite_quantized (8-bit weights) or saved_model")
    export.add_argument("--out", help="file or folder for the zip (default: the current folder)")
    export.set_defaults(handler=cmd_export)
    predict = verbs.add_parser("predict", help="classify images with a finished run")
    predict.add_argument("run_id")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except TLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _say(args: argparse.Namespace, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout)


def _emit(args: argparse.Namespace, payload: Any, describe: Callable[[Any], str]) -> None:
    print(json.dumps(payload, indent=1, default=str) if args.json else describe(payload))


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
        if "error" in r:
            lines.append(f"{r['image']}: error: {r['error']}")
        else:
            tops = ", ".join(f"{p['label']} {p['probability']:.2f}" for p in r["predictions"])
            lines.append(f"{r['image']}: {tops}")
    return "\n".join(lines)
