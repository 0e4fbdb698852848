"""Named experiments: a RunSpec saved under a name, so a person can come back to it.

Experiments are small JSON files under ``TL_HOME/experiments``. The file name is derived from
the experiment name (a sanitised slug plus a short hash of the exact name), so no name can
reach outside that folder and two names that slug alike do not overwrite each other.

This module also knows the *classic experiment* (scratch vs frozen vs frozen-then-fine-tune
on the same data, backbone and epoch budget) and the checks the Configure page shows before
anything is saved or trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from pathlib import Path

from tlcore.backbones.catalogue import (
    CATALOGUE,
    check_image_size,
    get_backbone_info,
    resolve_alpha,
    weights_on_disk,
)
from tlcore.config import RunSpec
from tlcore.errors import ConfigError, TLError
from tlcore.store import RunRecord, RunStore
from tlcore.paths import resolve_weights_path, subdir

MAX_NAME_LENGTH = 80
CLASSIC_STRATEGIES = ("scratch", "frozen", "frozen_then_finetune")
CLASSIC_MIN_EPOCHS = 2
"""frozen_then_finetune needs one epoch per stage, so the shared budget is at least two."""

_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def experiments_dir() -> Path:
    return subdir("experiments")


def _clean_name(name: str) -> str:
    cleaned = " ".join(str(name).split())
    if not cleaned:
        raise ConfigError("An experiment needs a name.", "Type a short name, e.g. 'flowers-frozen'.")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"Experiment names may be at most {MAX_NAME_LENGTH} characters.", "Shorten the name."
        )
    return cleaned


def _path_for(name: str) -> Path:
    slug = _SLUG_UNSAFE.sub("-", name).strip(".-")[:40] or "experiment"
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return experiments_dir() / f"{slug}-{digest}.json"


def save_experiment(name: str, spec: RunSpec) -> RunSpec:
    """Validate ``spec`` and save it under ``name`` (replacing an experiment of that name).

    Returns:
        The saved spec, whose ``name`` is the experiment name (runs are labelled with it).

    Raises:
        ConfigError: The name is empty or too long, or the spec is invalid.
    """
    name = _clean_name(name)
    spec = dataclasses.replace(spec, name=name).validate()
    target = _path_for(name)
    payload = {"name": name, "saved_at": time.time(), "spec": spec.to_dict()}
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, target)
    return spec


def load_experiment(name: str) -> RunSpec:
    """The spec saved under ``name``.

    Raises:
        ConfigError: No experiment has that name, or its file is damaged.
    """
    path = _path_for(_clean_name(name))
    if not path.is_file():
        raise ConfigError(
            f"There is no saved experiment called {name!r}.",
            "Save one on the Configure page first.",
        )
    try:
        spec = RunSpec.from_dict(json.loads(path.read_text())["spec"])
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"The saved experiment {name!r} is damaged ({exc}).",
                          "Save it again from the Configure page.") from exc
    try:
        return spec.validate()
    except ConfigError as exc:  # edited by hand: say which experiment, then what is wrong
        raise ConfigError(f"The saved experiment {name!r} has impossible settings: {exc.message}",
                          exc.hint or "Fix them on the Configure page and save again.") from exc


def list_experiments() -> list[str]:
    """Names of the saved experiments, most recently saved first."""
    entries = []
    for path in experiments_dir().glob("*.json"):
        try:
            payload = json.loads(path.read_text())
            entries.append((float(payload.get("saved_at", 0)), str(payload["name"])))
        except (OSError, ValueError, KeyError):
            continue  # a damaged file is skipped here; load_experiment reports it
    return [name for _, name in sorted(entries, reverse=True)]


def delete_experiment(name: str) -> None:
    """Forget the experiment ``name`` (its runs stay in the run store)."""
    _path_for(_clean_name(name)).unlink(missing_ok=True)


def classic_experiment(spec: RunSpec) -> list[RunSpec]:
    """The three runs of the classic transfer-learning comparison.

    Scratch (random weights), frozen backbone, and frozen-then-fine-tune, all on the same
    dataset and backbone and with the same total epoch budget: ``spec``'s total epochs, at
    least two. The two-stage run spends about half the budget on each stage.
    """
    budget = max(spec.train.total_epochs, CLASSIC_MIN_EPOCHS)
    finetune_epochs = budget // 2
    runs = []
    for strategy in CLASSIC_STRATEGIES:
        base = spec.with_strategy(strategy)
        two_stage = strategy == "frozen_then_finetune"
        train = dataclasses.replace(
            base.train,
            epochs=budget - finetune_epochs if two_stage else budget,
            fine_tune_epochs=finetune_epochs if two_stage else 0,
        )
        runs.append(dataclasses.replace(base, train=train, name=f"classic · {strategy}"))
    return runs


def classic_runs(spec: RunSpec, store: RunStore) -> list[tuple[RunSpec, RunRecord | None]]:
    """The classic experiment for ``spec``, each run paired with its newest stored attempt.

    Runs are found by spec key, so the results survive a page reload or a new session, and a
    classic experiment queued from the command line shows up too.
    """
    return [(run, store.latest_with_key(run.key())) for run in classic_experiment(spec)]


def spec_problems(spec: RunSpec) -> list[TLError]:
    """Everything that would make ``spec`` fail before training starts, as user errors.

    Covers :meth:`RunSpec.validate` plus the backbone's own limits (width multipliers with
    weights, the smallest input size) and a weights file that does not exist.
    """
    problems: list[TLError] = []
    try:
        spec.validate()
    except TLError as exc:
        problems.append(exc)
    backbone = spec.backbone
    if backbone.name in CATALOGUE:
        info = get_backbone_info(backbone.name)
        for check in (lambda: resolve_alpha(info, backbone.alpha),
                      lambda: check_image_size(info, spec.dataset.image_size)):
            try:
                check()
            except TLError as exc:
                problems.append(exc)
    elif not backbone.is_hub:
        problems.append(ConfigError(f"Unknown backbone {backbone.name!r}.",
                                    "Pick one from the catalogue or give a hub: handle."))
    if backbone.weights not in ("imagenet", "none"):
        problems.extend(_weights_file_problems(backbone.weights, problems))
    return problems


def _weights_file_problems(location: str, known: list[TLError]) -> list[TLError]:
    """A weights path outside the allowed folders is refused without saying whether it exists
    (a shared server must not answer questions about its file system); inside, a missing file
    is named."""
    try:
        path = resolve_weights_path(location)
    except TLError as exc:
        return [] if any(str(p) == str(exc) for p in known) else [exc]
    if path.is_file():
        return []
    return [ConfigError(
        f"The weights file {location!r} does not exist.",
        "Give the path of a .h5 or .weights.h5 file on the server, or choose imagenet / none.",
    )]


def spec_warnings(spec: RunSpec) -> list[str]:
    """Things worth knowing before training that do not stop it."""
    notes = []
    backbone = spec.backbone
    if backbone.weights == "imagenet" and backbone.name in CATALOGUE:
        try:
            on_disk = weights_on_disk(backbone.name, backbone.alpha, spec.dataset.image_size)
        except TLError:
            on_disk = True  # the invalid alpha is reported by spec_problems
        if not on_disk:
            notes.append(
                f"ImageNet weights for {get_backbone_info(backbone.name).title} are not on this "
                "server. Training will try to download them; without internet access it fails "
                "with a clear error. Choose weights 'none' or a backbone whose weights are on disk."
            )
    if backbone.weights == "none" and spec.train.strategy != "scratch":
        notes.append(
            "A frozen backbone with random weights has nothing to transfer: expect accuracy near "
            "chance. Use ImageNet or file weights, or the scratch strategy."
        )
    if spec.train.augmentations and spec.train.strategy == "frozen":
        notes.append("Augmentation makes every epoch of a frozen backbone pay the full forward pass.")
    return notes
