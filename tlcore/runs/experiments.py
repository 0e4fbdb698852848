"""Named experiments: a RunSpec saved under a name, so a person can come back to it.

Experiments are small JSON files under ``TL_HOME/experiments``. The file name is derived from
the experiment name (a sanitised slug plus a short hash of the exact name), so no name can
reach outside that folder and two names that slug alike do not overwrite each other.

This module also knows the *classic experiment* (frozen vs frozen-then-fine-tune vs scratch
on the same data, backbone and epoch budget), finds the classic experiments already in the run
store, and builds the settings a first visit starts from (:func:`starter_spec`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tlcore.backbones.catalogue import default_backbone, get_backbone_info
from tlcore.config import RunSpec
from tlcore.errors import ConfigError
from tlcore.files import atomic_write
from tlcore.paths import subdir
from tlcore.records import RunRecord
from tlcore.runs.store import RunStore

MAX_NAME_LENGTH = 80
CLASSIC_STRATEGIES = ("frozen", "frozen_then_finetune", "scratch")
"""In queue order: the pretrained runs take seconds and answer first; scratch, the slow
baseline, trains last."""
CLASSIC_AUTO = "auto"
"""The optional fourth run: the auto strategy (head search, then the top blocks fine-tuned)."""
CLASSIC_NAMES = frozenset(f"classic · {strategy}" for strategy in (*CLASSIC_STRATEGIES, CLASSIC_AUTO))
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
    except (ValueError, KeyError, TypeError, ConfigError) as exc:  # TypeError: not a JSON object
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
            name, saved_at = payload["name"], float(payload.get("saved_at", 0))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # a damaged file is skipped here; load_experiment reports it
        # Another file's copy (or a forged name) would list a name that loads a different file.
        if isinstance(name, str) and path == _path_for(name):
            entries.append((saved_at, name))
    return [name for _, name in sorted(entries, reverse=True)]


def search_experiment_name(spec: RunSpec) -> str:
    """``head search · mobilenet_v2 · flower_photos``: where a head search's best setting is saved
    (the backbone and the data's last name), the same from the app and the CLI."""
    data = PurePosixPath(spec.dataset.location).name or spec.dataset.source
    return f"head search · {spec.backbone.name} · {data}"[:MAX_NAME_LENGTH]


def delete_experiment(name: str) -> None:
    """Forget the experiment ``name`` (its runs stay in the run store)."""
    _path_for(_clean_name(name)).unlink(missing_ok=True)


def classic_experiment(spec: RunSpec, with_auto: bool = False) -> list[RunSpec]:
    """The runs of the classic transfer-learning comparison, in the order they queue.

    Frozen backbone, frozen-then-fine-tune, and scratch (random weights), all on the same
    dataset and backbone and with the same total epoch budget: ``spec``'s total epochs, at
    least two. The two-stage runs spend about half the budget on each stage. ``with_auto``
    adds the auto strategy last (its head search comes on top of the budget). Rebuilt from any
    of its runs' specs, the experiment gives the same runs back.
    """
    budget = max(spec.train.total_epochs, CLASSIC_MIN_EPOCHS)
    finetune_epochs = budget // 2
    runs = []
    for strategy in (*CLASSIC_STRATEGIES, *((CLASSIC_AUTO,) if with_auto else ())):
        base = spec.with_strategy(strategy)
        two_stage = strategy in ("frozen_then_finetune", CLASSIC_AUTO)
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
    pairs = [(run, store.latest_with_key(run.key())) for run in classic_experiment(spec, with_auto=True)]
    return pairs if pairs[-1][1] is not None else pairs[:-1]  # the auto run, once one was queued


@dataclass(frozen=True)
class ClassicBatch:
    """One classic experiment found in the run store.

    Attributes:
        specs: Its runs' specs, in queue order (:func:`classic_experiment`; the auto run
            only once it was queued).
        runs: The newest stored attempt of each, ``None`` where none was ever queued.
    """

    specs: tuple[RunSpec, ...]
    runs: tuple[RunRecord | None, ...]

    @property
    def stored(self) -> list[RunRecord]:
        return [run for run in self.runs if run is not None]

    @property
    def last_created(self) -> float:
        """When its newest run was queued: batches are listed newest first by it."""
        return max((run.created_at for run in self.stored), default=0.0)

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(spec.key() for spec in self.specs)

    @property
    def id(self) -> str:
        """The spec key of its first run: unique per batch, the same for any run it is rebuilt from."""
        return self.specs[0].key()


def recent_classics(store: RunStore, limit: int = 8) -> list[ClassicBatch]:
    """The classic experiments in the store, newest first, at most ``limit``.

    A classic run is one named after its strategy (``classic · frozen``) whose spec rebuilds a
    classic experiment containing it; its batch is that experiment, whatever experiment was
    current when it was queued, so last week's demo can be shown again after others.
    """
    batches: dict[frozenset[str], tuple[RunSpec, ...]] = {}
    for run in store.list_runs():
        if run.name not in CLASSIC_NAMES:
            continue
        specs = tuple(classic_experiment(run.spec, with_auto=True))
        keys = frozenset(spec.key() for spec in specs)
        if run.spec.key() in keys and keys not in batches:
            batches[keys] = specs
        if len(batches) == limit:
            break
    return [classic_batch(specs[0], store) for specs in batches.values()]


def classic_batch(spec: RunSpec, store: RunStore) -> ClassicBatch:
    """The classic experiment for ``spec`` (any of its runs' specs will do), as the store has it."""
    pairs = classic_runs(spec, store)
    return ClassicBatch(tuple(run_spec for run_spec, _ in pairs), tuple(run for _, run in pairs))


@dataclass(frozen=True)
class Starter:
    """The settings a visitor with no saved experiment starts from, and why, in a line.

    Attributes:
        spec: The defaults, with a backbone and width whose ImageNet weights are on disk.
        note: What was chosen and why, for the Home and Configure pages.
    """

    spec: RunSpec
    note: str


def starter_spec() -> Starter:
    """The defaults of :class:`RunSpec`, made to work on this server.

    The backbone and width come from the ImageNet weight files in Keras' cache
    (:func:`~tlcore.backbones.catalogue.default_backbone`); the data is the built-in shapes
    set, which is generated and needs no files, so a first training run works offline.
    """
    base = RunSpec()
    choice = default_backbone(base.dataset.image_size, base.backbone.name, base.backbone.alpha)
    usual = (base.backbone.name, base.backbone.alpha or get_backbone_info(base.backbone.name).default_alpha)
    spec = base if (choice.name, choice.alpha) == usual else dataclasses.replace(
        base, backbone=dataclasses.replace(base.backbone, name=choice.name, alpha=choice.alpha))
    data = f"the built-in {base.dataset.location} set (generated, needs no files)"
    backbone = f"Defaults for this server: {choice.reason}" if choice.on_disk else choice.reason
    return Starter(spec, f"{backbone} Data: {data}.")
