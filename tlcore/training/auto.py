"""The ``auto`` strategy: a head search on cached features, then fine-tuning of the top blocks.

The search (:mod:`tlcore.training.head_search`) tries head settings for its budget on the frozen
backbone's features, which it computes once and leaves in the feature store; the run then trains
``TrainSpec.auto_plan`` of the best setting: that head on the same cached features (read back,
not computed again), then the top blocks with discriminative rates under a cosine schedule,
stopping early on validation loss. The chosen settings are kept beside the checkpoint, so a
resumed run goes on with the head it chose instead of searching again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from tlcore.backbones import backbone_block_table
from tlcore.config import AUTO_SEARCH_TRIALS, RunSpec, TrainSpec
from tlcore.files import atomic_write
from tlcore.training.checkpoint import HEAD_SEARCH_FILE
from tlcore.training.head_search import HeadSearch, Trial, head_search
from tlcore.training.observer import PassProgress, TrainingObserver


def describe_search(search: HeadSearch) -> str:
    settings = ", ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                         for name, value in search.best.params.items())
    return (f"Head search: {len(search.trials)} trial(s) in {search.spent_seconds:.0f} s of a "
            f"{search.budget_seconds:.0f} s budget; the best reached validation accuracy "
            f"{search.best.val_accuracy:.1%} with {settings}.")


def _trial_progress(spec: RunSpec, observer: TrainingObserver) -> Callable[[Trial], None]:
    """Each finished trial as a pass over the search's budget, so the Train page shows the
    search moving (and how good it got) instead of a bar that waits a minute."""
    budget, trials = spec.train.search_budget_seconds, []

    def on_trial(trial: Trial) -> None:
        trials.append(trial)
        spent = sum(t.seconds for t in trials)
        best = max(t.val_accuracy for t in trials)
        name = f"Head search: trial {len(trials)}, best validation accuracy {best:.1%}; seconds"
        observer.on_pass(PassProgress(name, min(budget, round(spent)), budget, 0.0,
                                      max(0.0, budget - spent)))
    return on_trial


def _fit_blocks(spec: RunSpec, plan: TrainSpec, note: Callable[[str], None]) -> TrainSpec:
    """The plan's block count where the backbone has that many; the top quarter of its layers
    for a backbone without declared blocks (TF Hub, some keras-hub presets)."""
    if spec.train.fine_tune_blocks is not None:
        return plan  # the user's own choice: checked before the run was queued
    blocks = backbone_block_table(spec.backbone, spec.dataset.image_size)
    if not blocks:
        note("This backbone declares no blocks: auto fine-tunes the top quarter of its layers instead.")
        return dataclasses.replace(plan, fine_tune_blocks=None, fine_tune_fraction=0.25)
    return dataclasses.replace(plan, fine_tune_blocks=min(plan.fine_tune_blocks or 1, len(blocks)))


def resolve_auto(
    spec: RunSpec, observer: TrainingObserver, checkpoint_dir: Path | None, note: Callable[[str], None]
) -> RunSpec:
    """The two-stage spec an ``auto`` run trains: searched now, or read back when resuming.

    ``observer`` hears the search's passes (and may stop it); ``note`` keeps the run's remarks.
    """
    saved = checkpoint_dir / HEAD_SEARCH_FILE if checkpoint_dir is not None else None
    if saved is not None and saved.exists():
        params = json.loads(saved.read_text())
        note(f"Resuming with the head settings the search chose: {params}.")
    else:
        search = head_search(spec, max_trials=AUTO_SEARCH_TRIALS, observer=observer,
                             on_trial=_trial_progress(spec, observer))
        params = dict(search.best.params)
        note(describe_search(search))
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(saved, json.dumps(params))
    plan = _fit_blocks(spec, spec.train.auto_plan(params), note)
    depth = (f"the top {plan.fine_tune_blocks} block(s)" if plan.fine_tune_blocks
             else f"the top {plan.fine_tune_fraction:.0%} of the layers")
    views = (f" on {plan.augment_views} cached view(s) per image ({', '.join(plan.augmentations)})"
             if plan.augmentations and plan.augment_views else "")
    note(f"Then: the head at learning rate {plan.learning_rate:g} for {plan.epochs} epoch(s){views}, "
         f"and {depth} for up to {plan.fine_tune_epochs} epoch(s) "
         f"at {plan.fine_tune_learning_rate:g} (cosine, lowest block at "
         f"{plan.discriminative_floor:g}x), stopping after {plan.early_stopping_patience} "
         "epoch(s) without a better validation loss.")
    return RunSpec(spec.dataset, spec.backbone, plan, spec.name)
