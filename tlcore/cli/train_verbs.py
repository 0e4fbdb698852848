"""``train``, ``submit`` and ``classic``: the verbs that take a flag per spec field."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from tqdm import tqdm

from tlcore.cli.output import add_user_arguments, describe_rows, emit, say
from tlcore.cli.run_verbs import describe_run, run_payload, run_row
from tlcore.cli.spec_flags import add_spec_arguments, spec_from_args
from tlcore.config import RunSpec
from tlcore.records import EpochRecord, RunRecord, RunStatus
from tlcore.runs.access import AccessConfig, cli_user
from tlcore.runs.store import Claimant, RunStore
from tlcore.training.observer import BatchProgress, TrainingObserver

FOLLOW_POLL_S = 1.0


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


def launch_settings(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The owner of the runs this command launches, and the MLflow store (``--mlflow``) each
    new one keeps in its folder.

    Never an environment variable: the workers this command starts go on to train other
    people's queued runs, which must not be tracked where this command said.
    """
    return cli_user(AccessConfig.from_env(), args.owner).name, args.mlflow or None


def estimate_payload(spec: RunSpec, store: RunStore) -> dict[str, Any]:
    """The Configure page's time estimate for ``spec``, from its dataset's file listing and this
    server's finished runs."""
    from tlcore.data.preview import preview_dataset
    from tlcore.training.estimate import (
        estimate_basis,
        estimate_epoch_seconds,
        estimate_run_seconds,
        format_seconds,
        measure_server,
    )

    images = preview_dataset(spec.dataset, per_class=0).train_images
    server = measure_server(store)
    epoch, run = estimate_epoch_seconds(spec, images, server), estimate_run_seconds(spec, images, server)
    return {"train_images": images, "epochs": spec.train.total_epochs, "epoch_seconds": epoch,
            "run_seconds": run, "basis": estimate_basis(spec, server),
            "text": f"about {format_seconds(epoch)} per epoch, {format_seconds(run)} for "
                    f"{spec.train.total_epochs} epoch(s) on {images:,} training images"}


def cmd_train(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import create_for_data, reap
    from tlcore.runs.runner import execute_run

    store = RunStore()
    spec = spec_from_args(args)
    if args.estimate:
        emit(args, estimate_payload(spec, store), lambda p: f"Estimate: {p['text']} ({p['basis']}).")
        return 0
    reap(store)
    # Inserted already claimed: a dispatcher must never find this run queued and start a worker.
    owner, tracking = launch_settings(args)
    run, reused, change = create_for_data(store, spec, owner=owner, force=args.force,
                                          claimant=Claimant.current(), tracking=tracking)
    if change:
        say(args, change)
    if reused and run.is_active:
        say(args, f"An equal run {run.id} is {run.status}; following it.")
        run = follow(store, run.id)
    elif not reused:
        bar = _EpochBar(spec.train.total_epochs, enabled=True)
        try:
            run = execute_run(store, run.id, observer=bar, reraise_user_errors=True)
        finally:
            bar.close()
    else:
        say(args, f"Reusing finished run {run.id} (same settings, same data); pass --force to retrain.")
    payload = {**run_payload(store, run), "cached": reused}
    emit(args, payload, describe_run)
    return 0 if run.status in (RunStatus.FINISHED, RunStatus.STOPPED) else 1


def follow(store: RunStore, run_id: str) -> RunRecord:
    from tlcore.runs.jobs import reap

    while (run := store.get(run_id)).is_active:
        time.sleep(FOLLOW_POLL_S)
        reap(store)
    return run


def cmd_submit(args: argparse.Namespace) -> int:
    from tlcore.runs.jobs import submit

    owner, tracking = launch_settings(args)
    submission = submit(spec_from_args(args), force=args.force, owner=owner, tracking=tracking)
    run = submission.run
    store = RunStore()
    if submission.data_change:
        say(args, submission.data_change)
    payload = {
        "run_id": run.id, "status": run.status, "cached": submission.reused,
        "queue_position": store.queue_position(run.id), "data_fingerprint": run.data_fingerprint,
    }
    emit(args, payload, lambda p: f"{p['run_id']} {p['status']}" + (" (reused)" if p["cached"] else ""))
    return 0


def cmd_classic(args: argparse.Namespace) -> int:
    """Queue scratch vs frozen vs frozen-then-fine-tune on the same data, backbone and budget."""
    from tlcore.runs.experiments import classic_experiment
    from tlcore.runs.jobs import submit

    store = RunStore()
    owner, tracking = launch_settings(args)
    runs = [submit(spec, store, force=args.force, owner=owner, tracking=tracking).run
            for spec in classic_experiment(spec_from_args(args), with_auto=args.with_auto)]
    if args.wait:
        runs = [follow(store, run.id) for run in runs]
    emit(args, [run_row(r) for r in runs], describe_rows)
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    for name, handler, help_text in (
        ("train", cmd_train, "train in the foreground with a progress bar"),
        ("submit", cmd_submit, "queue a run for a background worker"),
    ):
        sub = verbs.add_parser(name, help=help_text)
        add_spec_arguments(sub)
        add_user_arguments(sub)
        sub.set_defaults(handler=handler)
        if name == "train":
            sub.add_argument("--estimate", action="store_true",
                             help="print the time estimate (as the Configure page shows it) and do not train")
    classic = verbs.add_parser(
        "classic", help="queue scratch vs frozen vs frozen_then_finetune with one budget")
    add_spec_arguments(classic, skip=("train.strategy",))
    add_user_arguments(classic)  # the experiment sets the three strategies
    classic.add_argument("--wait", action="store_true", help="wait for the runs and print a table")
    classic.add_argument("--with-auto", action="store_true",
                         help="add a fourth run with the auto strategy (head search, then fine-tuning)")
    classic.set_defaults(handler=cmd_classic, strategy="frozen")
