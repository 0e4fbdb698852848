"""Named experiments: a RunSpec saved under a name, so a person can come back to it.

Experiments are small JSON files under ``TL_HOME/experiments``. The file name is derived from
the experiment name (a sanitised slug plus a short hash of the exact name), so no name can
reach outside that folder and two names that slug alike do not overwrite each other.

This module also knows the *classic experiment* (scratch vs frozen vs frozen-then-fine-tune
on the same data, backbone and epoch budget).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path

from tlcore.config import RunSpec
from tlcore.errors import ConfigError
from tlcore.files import atomic_write
from tlcore.paths import subdir
from tlcore.records import RunRecord
from tlcore.runs.store import RunStore

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
    atomic_write(target, json.dumps(payload, indent=1))
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
