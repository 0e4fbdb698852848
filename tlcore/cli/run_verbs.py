"""Verbs on runs that exist: list, show, cancel, resume, delete, and the worker's own."""

from __future__ import annotations

import argparse
from typing import Any

from tlcore.cli.output import add_user_arguments, describe_rows, emit, json_verb, with_percents
from tlcore.errors import TLError
from tlcore.records import RunArtifacts, RunRecord
from tlcore.runs.access import AccessConfig, User, cli_user, require_manage
from tlcore.runs.store import RunStore


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
        "mistakes": None,
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
        payload["mistakes"] = report.get("mistakes", [])
    return payload


def cmd_runs(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import reap

    store = RunStore()
    if not store.read_only:  # a read-only store is listed as it is: dead workers stay unrecorded
        reap(store)
    emit(args, [run_row(r) for r in store.list_runs()],
          lambda rows: describe_rows(with_percents(rows, "test_accuracy")))
    return 0


def run_row(run: RunRecord) -> dict[str, Any]:
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
    emit(args, run_payload(store, store.get(args.run_id)), describe_run)
    return 0


def managing_user(args: argparse.Namespace, store: RunStore, run_id: str) -> User:
    """The command's user, once it is known that they may stop, resume or delete ``run_id``."""
    user = cli_user(AccessConfig.from_env(), args.owner, args.admin)
    require_manage(user, store.get(run_id))
    return user


def cmd_cancel(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import cancel

    store = RunStore()
    managing_user(args, store, args.run_id)
    run = cancel(args.run_id, store)
    print(f"{run.id} {run.status}" + (" (stops at its next batch)" if run.is_active else ""))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import resume

    store = RunStore()
    managing_user(args, store, args.run_id)
    run = resume(args.run_id, store)
    print(f"{run.id} {run.status} (continues after its last finished epoch)")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A worker's stderr is its run's log: a crash in native code (TensorFlow, a decoder) would
    otherwise end the process without a word there, so faulthandler writes its stack."""
    import faulthandler

    from tlcore.runs.jobs import run_worker

    faulthandler.enable()
    return run_worker(args.run_id)


def cmd_delete(args: argparse.Namespace) -> int:
    store = RunStore()
    user = managing_user(args, store, args.run_id)
    store.delete(args.run_id, user.name, user.is_admin)
    print(f"deleted {args.run_id}")
    return 0


def describe_run(p: dict[str, Any]) -> str:
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


def cmd_task(args: argparse.Namespace) -> int:
    from tlcore.runs.tasks import run_task

    return run_task(args.run_id)


def register(verbs: argparse._SubParsersAction) -> None:
    json_verb(verbs, "runs", cmd_runs, "list runs")
    for name, handler, help_text in (
        ("show", cmd_show, "show one run"),
        ("cancel", cmd_cancel, "stop a queued or running run"),
        ("resume", cmd_resume, "queue a failed or stopped run again, from its last epoch"),
        ("worker", cmd_worker, "(internal) train a queued run"),
        ("task", cmd_task, "(internal) run a background task (LR range test, head search, audit)"),
        ("delete", cmd_delete, "delete a finished run and its artifacts"),
    ):
        sub = json_verb(verbs, name, handler, help_text, "run_id")
        if name in ("cancel", "resume", "delete"):
            add_user_arguments(sub, admin=True)
