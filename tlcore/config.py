"""Run configuration as frozen dataclasses.

A run is fully described by a :class:`RunSpec`; its :meth:`RunSpec.key` is the hash of its
canonical JSON, which is how the store recognises a run that was already trained.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcore.errors import BackboneError, ConfigError
from tlcore.paths import resolve_weights_path

STRATEGIES = ("scratch", "frozen", "finetune", "frozen_then_finetune", "auto")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
AUGMENTATIONS = ("flip", "rotation", "zoom", "contrast", "translation")
SCHEDULES = ("constant", "cosine", "one_cycle")
FINE_TUNING = frozenset({"finetune", "frozen_then_finetune", "auto"})
"""Strategies that train backbone layers at some point."""
SOURCE_KINDS = ("builtin", "tfds", "folder", "zip")
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
BATCH_SIZES = (8, 16, 32, 64, 128)
# numpy seeds stop at 2**32 - 1 and some TensorFlow ops take an int32 seed.
MAX_SEED = 2**31 - 1

# Bumped whenever training code changes what a spec produces, so old runs are not reused.
SPEC_VERSION = 1

AUTO_FINE_TUNE_BLOCKS = 4
AUTO_DISCRIMINATIVE_FLOOR = 0.1
AUTO_PATIENCE = 3
AUTO_SEARCH_TRIALS = 16
"""The auto strategy's head search stops after this many trials, or at its budget if sooner: past
the eight random starts, a few guided trials find most of what a longer search does, and the
fine-tuning after it is where auto's time goes best."""
AUTO_AUGMENTATIONS = ("flip",)
AUTO_VIEWS = 4
"""What the ``auto`` strategy fine-tunes with unless the spec says otherwise (see TrainSpec.auto_plan):
the top four blocks (a quarter of MobileNetV2's), and horizontal flips as four cached views per
training image, as fastai's defaults augment."""

ADDED_LATER: dict[str, dict[str, Any]] = {
    "train": {"schedule": "constant", "fine_tune_schedule": "constant", "warmup_fraction": 0.1,
              "fine_tune_blocks": None, "discriminative_floor": 1.0, "oversample": False,
              "weight_decay": 0.0, "head_hidden_units": 0, "search_budget_seconds": 60,
              "mixed_precision": False},
}
"""Fields added after runs were stored, with the default that trains as before they existed.

At that default a field is left out of :meth:`RunSpec.key`, so a run stored before the field
keeps its key and is still reused."""

SETTING = "setting"

HUB_URL_SCHEMES = ("https", "http", "gs")
"""URL schemes a ``hub:`` handle may use; others (``file://``, ``ram://``) reach the server's own
files past the allowed folders, since TensorFlow reads them as paths."""

PATH_SOURCE_KINDS = ("folder", "zip")
"""Dataset sources whose location is a path on the server."""


def _require(condition: bool, message: str, hint: str = "") -> None:
    if not condition:
        raise ConfigError(message, hint)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Bound:
    """The allowed range of a numeric setting, written once and read by every front end.

    ``validate()`` refuses values outside it, the CLI checks flags against it and the Configure
    form takes its widget limits from it, so the three can never disagree.

    Attributes:
        low: Smallest allowed value; ``None`` means no lower limit.
        high: Largest allowed value; ``None`` means no upper limit.
        low_open: ``low`` itself is excluded (a share that must be above 0).
        high_open: ``high`` itself is excluded (dropout below 1).
        step: Increment the form's widgets move by.
        form_high: Largest value the form offers where the allowed range is open or too wide to
            slide through; the CLI and saved experiments may still go up to ``high``.
        presets: Values a pick-list offers (learning rates, batch sizes); the current value is
            always added to them.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    step: float | None = None
    form_high: float | None = None
    presets: tuple[float, ...] = ()

    def contains(self, value: float) -> bool:
        """Whether ``value`` is allowed; NaN never is."""
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return bool(above and below and value == value)

    def describe(self) -> str:
        """The range in words (``between 1 and 1000``) or, with an open end, as an interval."""
        low, high = self.low, self.high
        if low is not None and high is not None:
            if not (self.low_open or self.high_open):
                return f"between {_number(low)} and {_number(high)}"
            return (f"in {'(' if self.low_open else '['}{_number(low)}, "
                    f"{_number(high)}{')' if self.high_open else ']'}")
        if low is not None:
            return f"{'above' if self.low_open else 'at least'} {_number(low)}"
        if high is not None:
            return f"{'below' if self.high_open else 'at most'} {_number(high)}"
        return "any number"

    @property
    def form_min(self) -> float | None:
        """Smallest value a widget offers: ``low``, or one step above it when ``low`` is excluded.

        ``None`` (no widget limit) when ``low`` is excluded and there is no step to stay above it by.
        """
        if self.low is None or not self.low_open:
            return self.low
        return self.low + self.step if self.step else None

    @property
    def form_max(self) -> float | None:
        """Largest value a widget offers: ``form_high``, else ``high`` (one step below if excluded)."""
        if self.form_high is not None:
            return self.form_high
        if self.high is None or not self.high_open:
            return self.high
        return self.high - self.step if self.step else None


@dataclass(frozen=True)
class Setting:
    """What the front ends need to know about one spec field, kept in the field's metadata.

    Attributes:
        label: Name shown to people and used in error messages (``Image size``).
        help: One line for ``--help`` and widget tooltips.
        bound: Allowed range of a number; ``None`` for non-numbers.
        choices: Allowed values of a name, or of each item of a tuple of names.
        unit: Unit said after the range in messages (``pixels``).
    """

    label: str
    help: str = ""
    bound: Bound | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""

    def check(self, value: Any) -> None:
        """Refuse ``value`` when it is outside the bound or not among the choices.

        ``None`` passes: optional fields (alpha, fine-tune layers) mean "the default" by it.

        Raises:
            ConfigError: The value is not allowed, with the allowed range or choices.
        """
        if value is None:
            return
        if self.bound is not None:
            _require(isinstance(value, (int, float)) and not isinstance(value, bool),
                     f"{self.label} must be a number, got {value!r}.")
            unit = f" {self.unit}" if self.unit else ""
            _require(self.bound.contains(value),
                     f"{self.label} must be {self.bound.describe()}{unit}, got {_number(value)}.")
        if self.choices:
            items = value if isinstance(value, tuple) else (value,)
            unknown = [str(item) for item in items if item not in self.choices]
            _require(not unknown, f"Unknown {self.label.lower()}: {', '.join(unknown)}.",
                     f"Choose from {', '.join(self.choices)}.")


def _spec_field(default: Any, label: str, help: str = "", **setting: Any) -> Any:
    """A dataclass field whose metadata carries its :class:`Setting`."""
    return field(default=default, metadata={SETTING: Setting(label, help, **setting)})


def settings(spec_class: type) -> dict[str, Setting]:
    """Every field of ``spec_class`` (a spec dataclass) with its :class:`Setting`, in order."""
    return {f.name: f.metadata[SETTING] for f in dataclasses.fields(spec_class)}


def setting(spec_class: type, name: str) -> Setting:
    """The :class:`Setting` of one field, e.g. ``setting(TrainSpec, "epochs").bound``."""
    return settings(spec_class)[name]


def _check_settings(spec: Any) -> None:
    _check_text(spec)
    for name, info in settings(type(spec)).items():
        info.check(getattr(spec, name))


_field_types = functools.cache(typing.get_type_hints)
_TYPE_WORDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}


def matches_type(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the type a dataclass field is declared with.

    Specs and records are read back from JSON that people can edit (saved experiments, a run's
    ``run.json``), where ``2.5`` epochs or ``"yes"`` for a switch would otherwise pass, and a
    number where text belongs would fail later with a traceback. Ints pass for floats; bools,
    which Python counts as ints, pass only for bools.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(matches_type(value, arg) for arg in args)
    if origin in (tuple, list):
        return isinstance(value, origin) and all(matches_type(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint in (int, float):
        allowed = (int, float) if hint is float else int
        return isinstance(value, allowed) and not isinstance(value, bool)
    return isinstance(value, hint)


def _check_types(spec: Any) -> None:
    """Refuse a field whose value is not of its declared type (see :func:`matches_type`)."""
    for name, hint in _field_types(type(spec)).items():
        value = getattr(spec, name)
        if not matches_type(value, hint):
            union = typing.get_origin(hint) in (types.UnionType, typing.Union)
            kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)] if union else [hint]
            kind = typing.get_origin(kinds[0]) or kinds[0]
            if kind is int and not isinstance(value, float):  # text or a list: not a number at all
                kind = float
            words = "a list of names" if kind is tuple else _TYPE_WORDS.get(kind, kind.__name__)
            label = settings(type(spec))[name].label
            raise ConfigError(f"{label} must be {words}, got {value!r}.",
                              "Fix the value (in the saved file, if it was edited by hand).")


def _require_absolute(location: str, what: str) -> None:
    """Refuse a relative or ``~`` path: it names another folder for every person and process.

    A worker runs in the project folder, and two people typing ``folder:flowers`` in their own
    folders would share one spec key, so one would reuse a run trained on the other's images.
    """
    if not Path(location).is_absolute():
        raise ConfigError(
            f"The {what} {location!r} is not a full path.",
            "Give its full path on the server, starting with /: a relative or ~ path names another "
            "folder for each person and process.",
        )


def _absolute(location: str) -> str:
    """``location`` with ``~`` expanded and made absolute against this process's folder."""
    expanded = os.path.expanduser(location)
    return expanded if os.path.isabs(expanded) else os.path.join(os.getcwd(), expanded)


def check_hub_url(handle: str) -> None:
    """Refuse a ``hub:`` URL whose scheme is not one of :data:`HUB_URL_SCHEMES`.

    Raises:
        BackboneError: ``file://``, ``ram://`` and the like, which read the server's own files
            without the check that keeps local models inside the allowed folders.
    """
    scheme = handle.split("://", 1)[0].strip().lower()
    if scheme not in HUB_URL_SCHEMES:
        raise BackboneError(
            f"TF Hub URLs must start with {', '.join(s + '://' for s in HUB_URL_SCHEMES)}; "
            f"got a {scheme}:// URL.",
            "For a SavedModel on this server, write hub: and the full path of its folder "
            "(inside the folders weights may be read from).",
        )


def _check_text(spec: Any) -> None:
    """Refuse text that is not valid UTF-8 (a path typed in a non-UTF-8 locale).

    Such text arrives as surrogate escapes; stored in a run, it would break every page and
    command that shows the run, for every user of a shared server.
    """
    for item in dataclasses.fields(spec):
        value = getattr(spec, item.name)
        for text in value if isinstance(value, tuple) else (value,):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    shown = text.encode("utf-8", "backslashreplace").decode()
                    raise ConfigError(
                        f"The {item.name.replace('_', ' ')} {shown!r} is not valid UTF-8.",
                        "Rename the file or folder with UTF-8 characters, or type it in a UTF-8 terminal.",
                    ) from None


_SHARE = Bound(0.0, 1.0, low_open=True, step=0.05)
_HOLD_OUT = Bound(0.0, 1.0, low_open=True, high_open=True, step=0.05, form_high=0.4)
_RATE = Bound(0.0, 1.0, low_open=True, presets=LEARNING_RATES)
_SEED = Bound(0, MAX_SEED)


@dataclass(frozen=True)
class DatasetSpec:
    """Where images come from and how they are split.

    Attributes:
        source: ``builtin:NAME``, ``tfds:NAME``, ``folder:PATH`` or ``zip:PATH``.
        subset: Fraction of the available images to use, in (0, 1].
        image_size: Side in pixels of the square images fed to the model.
        val_fraction: Share of the images held out for validation (when the source has no
            validation split of its own).
        test_fraction: Share held out for testing (when the source has no test split).
        seed: Seed of the stratified split and of subsetting.
        data_dir: TFDS data directory; prepared data there works offline.
    """

    source: str = _spec_field("builtin:shapes", "Dataset source",
                              "builtin:NAME, tfds:NAME, folder:PATH or zip:PATH")
    subset: float = _spec_field(1.0, "Subset", "fraction of the images used", bound=_SHARE)
    image_size: int = _spec_field(160, "Image size", "side of the square model input",
                                  bound=Bound(16, 1024, step=16), unit="pixels")
    val_fraction: float = _spec_field(0.15, "Validation fraction", "share held out for validation",
                                      bound=_HOLD_OUT)
    test_fraction: float = _spec_field(0.15, "Test fraction", "share held out for testing",
                                       bound=_HOLD_OUT)
    seed: int = _spec_field(42, "Seed", "seed of the split and of training", bound=_SEED)
    data_dir: str | None = _spec_field(None, "TFDS data directory", "prepared data there works offline")

    @property
    def kind(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def location(self) -> str:
        return self.source.split(":", 1)[1] if ":" in self.source else ""

    def validate(self) -> None:
        _check_types(self)
        _require(
            not (self.kind in SOURCE_KINDS and not self.location.strip()),
            "No dataset chosen yet.",
            "Pick a builtin set or a TFDS name, type a folder on the server, or upload a zip.",
        )
        _require(
            self.kind in SOURCE_KINDS,
            f"Dataset source {self.source!r} is not understood.",
            "Use builtin:NAME, tfds:NAME, folder:PATH or zip:PATH.",
        )
        _check_settings(self)
        _require(
            self.val_fraction + self.test_fraction < 0.9,
            "Validation and test fractions must each be in (0, 1) and leave at least 10 % "
            "for training.",
        )
        if self.kind in PATH_SOURCE_KINDS:
            _require_absolute(self.location, f"{self.kind} path")
        if self.data_dir is not None:
            _require_absolute(self.data_dir, "TFDS data directory")

    def with_absolute_paths(self) -> DatasetSpec:
        """The same dataset with its paths made absolute (see :meth:`RunSpec.with_absolute_paths`)."""
        spec = self
        if self.kind in PATH_SOURCE_KINDS and self.location.strip():
            spec = dataclasses.replace(spec, source=f"{self.kind}:{_absolute(self.location.strip())}")
        if self.data_dir:
            spec = dataclasses.replace(spec, data_dir=_absolute(self.data_dir))
        return spec


@dataclass(frozen=True)
class BackboneSpec:
    """Which pretrained network to build on.

    Attributes:
        name: A catalogue name (``mobilenet_v2``), ``hub:URL_OR_FOLDER`` for TF Hub, or
            ``kerashub:PRESET_OR_FOLDER`` for a keras-hub preset (a registered name, or the full
            path of a folder saved with ``save_to_preset``).
        alpha: Width multiplier of the MobileNet family; ``None`` means the default.
        weights: ``imagenet``, ``none`` or a path to a weights file. For a keras-hub preset,
            ``imagenet`` means the preset's own weights and ``none`` its architecture at random.
    """

    name: str = _spec_field("mobilenet_v2", "Backbone", "catalogue name (see `backbones`), "
                            "hub:URL_OR_FOLDER or kerashub:PRESET_OR_FOLDER")
    alpha: float | None = _spec_field(None, "Width multiplier alpha", "MobileNet width multiplier",
                                      bound=Bound(0.0, 2.0, low_open=True))
    weights: str = _spec_field("imagenet", "Weights",
                               "imagenet | none | PATH to a weights file; none for the scratch strategy")

    @property
    def is_hub(self) -> bool:
        return self.name.startswith("hub:")

    @property
    def is_kerashub(self) -> bool:
        return self.name.startswith("kerashub:")

    def validate(self) -> None:
        """Check the settings, and that any file named lies inside the allowed folders.

        The path check runs here as well as where the file is read, so that a spec naming a
        file outside :func:`~tlcore.paths.weights_roots` is refused before it is queued.

        Raises:
            ConfigError: A setting is impossible.
            BackboneError: A weights file or SavedModel folder is outside the allowed folders.
        """
        _check_types(self)
        _require(bool(self.name), "A backbone name is required.")
        _require(bool(self.weights), "Weights must be 'imagenet', 'none' or a file path.")
        _check_settings(self)
        if self.is_hub and "://" in self.hub_handle:
            check_hub_url(self.hub_handle)
        if self.is_kerashub:
            self._check_kerashub()
        for location in self.local_files():
            _require_absolute(location, "weights or SavedModel path")
            resolve_weights_path(location)

    def _check_kerashub(self) -> None:
        """A keras-hub preset is a registered name or a folder, with its own weights or none.

        Kaggle and Hugging Face handles are refused: they download whatever their owner put
        there, and name no version that a spec key could hold.
        """
        handle = self.kerashub_handle
        _require(bool(handle), "A kerashub: backbone needs a preset name or a folder.",
                 "Write kerashub:NAME (e.g. kerashub:resnet_50_imagenet) or kerashub:/path/to/preset.")
        _require("://" not in handle, f"kerashub:{handle} is a download handle, not a preset name or folder.",
                 "Use a preset name from `python -m tlcore backbones`, or download the preset elsewhere, "
                 "copy its folder here and write kerashub:/path/to/folder.")
        _require(self.kerashub_folder is not None or all(c.isalnum() or c in "_.-" for c in handle),
                 f"{handle!r} is neither a keras-hub preset name nor a folder path.",
                 "Preset names are letters, digits and _ . - (kerashub:efficientnet_b0_ra_imagenet); "
                 "a folder is a full path (kerashub:/srv/presets/efficientnet_b0_ra_imagenet).")
        _require(self.alpha is None,
                 f"keras-hub presets have no width multiplier, but alpha={self.alpha} was given.",
                 "Leave alpha empty; the preset's name chooses its size.")
        _require(self.weights in ("imagenet", "none"),
                 f"A keras-hub preset brings its own weights; weights={self.weights!r} cannot apply to it.",
                 "Use weights 'imagenet' (the preset's own) or 'none' (its architecture, randomly "
                 "initialised); for other weights, save them as a preset folder and name that folder.")

    @property
    def hub_handle(self) -> str:
        """The URL or folder after ``hub:`` (empty for catalogue backbones)."""
        return self.name[len("hub:"):].strip() if self.is_hub else ""

    @property
    def kerashub_handle(self) -> str:
        """The preset name or folder after ``kerashub:`` (empty for other backbones)."""
        return self.name[len("kerashub:"):].strip() if self.is_kerashub else ""

    @property
    def kerashub_folder(self) -> str | None:
        """The preset folder when the ``kerashub:`` handle is a path (has a ``/`` or starts with ``~``)."""
        handle = self.kerashub_handle
        return handle if "/" in handle or handle.startswith("~") else None

    def local_files(self) -> list[str]:
        """Paths on the server this backbone reads: a weights file, a local SavedModel or preset folder."""
        handle = self.hub_handle
        files = [handle] if handle and "://" not in handle else []
        files += [self.kerashub_folder] if self.kerashub_folder is not None else []
        return files + ([self.weights] if self.weights not in ("imagenet", "none") else [])

    def with_absolute_paths(self) -> BackboneSpec:
        """The same backbone with its paths made absolute (see :meth:`RunSpec.with_absolute_paths`)."""
        spec, handle = self, self.hub_handle
        if handle and "://" not in handle:
            spec = dataclasses.replace(spec, name=f"hub:{_absolute(handle)}")
        if self.kerashub_folder is not None:
            spec = dataclasses.replace(spec, name=f"kerashub:{_absolute(self.kerashub_folder)}")
        if self.weights not in ("imagenet", "none", ""):
            spec = dataclasses.replace(spec, weights=_absolute(self.weights))
        return spec


@dataclass(frozen=True)
class TrainSpec:
    """How the classifier is trained.

    Attributes:
        strategy: One of :data:`STRATEGIES`.
        epochs: Epochs of the first (or only) stage.
        fine_tune_epochs: Epochs of the second stage of ``frozen_then_finetune``.
        fine_tune_layers: Number of backbone layers unfrozen from the top; ``None`` uses
            ``fine_tune_fraction``.
        fine_tune_fraction: Share of the backbone's layers unfrozen from the top.
        learning_rate: Learning rate of the head (first stage).
        fine_tune_learning_rate: Lower learning rate used whenever backbone layers train.
        batch_size: Images per step.
        optimizer: One of :data:`OPTIMIZERS`.
        label_smoothing: Label smoothing of the cross-entropy loss.
        class_weights: Weight classes inversely to their frequency.
        early_stopping_patience: Epochs without validation-loss improvement before stopping
            (best weights restored); 0 disables it.
        dropout: Dropout before the dense head.
        augmentations: Names from :data:`AUGMENTATIONS`, active only while training.
        feature_cache: Run the frozen part of the network once per image and train the rest
            on its cached outputs (same result, much faster); see :mod:`tlcore.training.cached_stage`.
        augment_views: With augmentations and the feature cache: how many augmented views of
            each training image are precomputed (0 augments on the fly, without the cache).
        seed: Seed of weight initialisation, shuffling, dropout and augmentation.
        schedule: How the first stage's learning rate moves over its steps, one of
            :data:`SCHEDULES` (see :mod:`tlcore.training.schedules`).
        fine_tune_schedule: The same for every stage that trains backbone layers.
        warmup_fraction: Share of a cosine stage's steps spent warming up linearly from zero.
        fine_tune_blocks: Backbone blocks unfrozen from the top, whole blocks only (see
            :mod:`tlcore.backbones.blocks`); takes precedence over layers and fraction.
        discriminative_floor: When backbone layers train, the lowest unfrozen block's share of
            the fine-tune rate; blocks in between are spread geometrically (fastai's
            ``slice(lr * floor, lr)``). 1 trains every layer at one rate.
        oversample: Draw training images of small classes more often, so each class is seen
            about equally often per epoch.
        weight_decay: Decoupled weight decay (Keras' ``weight_decay``) of the optimizer.
        head_hidden_units: Width of one hidden ReLU layer between dropout and the softmax; 0
            keeps the head a single dense layer.
        search_budget_seconds: Time the ``auto`` strategy's head search on cached features may
            take before fine-tuning starts.
        mixed_precision: Compute in float16 on GPUs (Keras' ``mixed_float16``), the softmax in
            float32 (see :mod:`tlcore.training.precision`).
    """

    strategy: str = _spec_field("frozen", "Strategy", "which layers train, and when", choices=STRATEGIES)
    epochs: int = _spec_field(5, "Epochs", "epochs of the first (or only) stage", bound=Bound(1, 1000))
    fine_tune_epochs: int = _spec_field(0, "Fine-tune epochs", "second stage of frozen_then_finetune",
                                        bound=Bound(0, 1000))
    fine_tune_layers: int | None = _spec_field(None, "Fine-tune layers",
                                               "backbone layers unfrozen from the top (default: by fraction)",
                                               bound=Bound(1, None, form_high=2000))
    fine_tune_fraction: float = _spec_field(0.25, "Fine-tune fraction",
                                            "share of backbone layers unfrozen from the top", bound=_SHARE)
    learning_rate: float = _spec_field(1e-3, "Learning rate", "learning rate of the head", bound=_RATE)
    fine_tune_learning_rate: float = _spec_field(1e-4, "Fine-tune learning rate",
                                                 "lower rate while backbone layers train", bound=_RATE)
    batch_size: int = _spec_field(32, "Batch size", "images per step",
                                  bound=Bound(1, 1024, presets=BATCH_SIZES))
    optimizer: str = _spec_field("adam", "Optimizer", "the Keras optimizer of every stage",
                                 choices=OPTIMIZERS)
    label_smoothing: float = _spec_field(0.0, "Label smoothing", "of the cross-entropy loss",
                                         bound=Bound(0.0, 1.0, high_open=True, step=0.05, form_high=0.3))
    class_weights: bool = _spec_field(False, "Class weights", "weight classes inversely to their frequency")
    early_stopping_patience: int = _spec_field(0, "Early-stopping patience",
                                               "epochs without validation-loss improvement (0: off)",
                                               bound=Bound(0, None, form_high=100))
    dropout: float = _spec_field(0.2, "Dropout", "dropout before the dense head",
                                 bound=Bound(0.0, 1.0, high_open=True, step=0.05, form_high=0.8))
    augmentations: tuple[str, ...] = _spec_field((), "Augmentation", "active only while training",
                                                 choices=AUGMENTATIONS)
    feature_cache: bool = _spec_field(True, "Feature cache", "run the frozen part once per image")
    augment_views: int = _spec_field(0, "Augmented views", "views precomputed per image (0: on the fly)",
                                     bound=Bound(0, 20))
    seed: int = _spec_field(42, "Seed", "seed of the split and of training", bound=_SEED)
    schedule: str = _spec_field("constant", "Schedule", "how the head stage's learning rate moves",
                                choices=SCHEDULES)
    fine_tune_schedule: str = _spec_field("constant", "Fine-tune schedule",
                                          "how the rate moves while backbone layers train", choices=SCHEDULES)
    warmup_fraction: float = _spec_field(0.1, "Warm-up fraction", "share of cosine steps warming up",
                                         bound=Bound(0.0, 0.5, step=0.05))
    fine_tune_blocks: int | None = _spec_field(None, "Fine-tune blocks",
                                               "whole backbone blocks unfrozen from the top",
                                               bound=Bound(1, None, form_high=40))
    discriminative_floor: float = _spec_field(1.0, "Discriminative floor",
                                              "lowest unfrozen block's share of the fine-tune rate (1: off)",
                                              bound=Bound(0.0, 1.0, low_open=True, step=0.01))
    oversample: bool = _spec_field(False, "Oversample", "draw small classes more often while training")
    weight_decay: float = _spec_field(0.0, "Weight decay", "decoupled weight decay of every optimizer",
                                      bound=Bound(0.0, 0.1, step=1e-4))
    head_hidden_units: int = _spec_field(0, "Hidden units",
                                         "a ReLU layer of this width before the softmax (0: none)",
                                         bound=Bound(0, 4096, step=64))
    mixed_precision: bool = _spec_field(False, "Mixed precision",
                                        "float16 compute on GPUs (mixed_float16); refused on a CPU")
    search_budget_seconds: int = _spec_field(60, "Search budget",
                                             "seconds the auto strategy's head search may take",
                                             bound=Bound(5, 3600, step=5, form_high=600), unit="seconds")

    def validate(self) -> None:
        _check_types(self)
        _check_settings(self)
        _require(
            self.strategy != "frozen_then_finetune" or self.fine_tune_epochs >= 1,
            "frozen_then_finetune needs at least one fine-tune epoch.",
            "Set fine-tune epochs to 1 or more, or choose the frozen strategy.",
        )
        _require(
            not (self.class_weights and self.oversample),
            "Class weights and oversampling both correct class imbalance; together they over-correct.",
            "Choose one: oversampling draws small classes more often, class weights count their images more.",
        )

    @property
    def total_epochs(self) -> int:
        if self.strategy == "auto":
            return self.epochs + (self.fine_tune_epochs or self.epochs)
        second = self.fine_tune_epochs if self.strategy == "frozen_then_finetune" else 0
        return self.epochs + second

    def auto_plan(self, head: Mapping[str, Any] | None = None) -> TrainSpec:
        """What the ``auto`` strategy trains once its head search chose ``head`` (TrainSpec fields).

        The head trains on cached features at the searched settings; then the top blocks fine-tune
        with discriminative rates under a cosine schedule, stopping early on validation loss.
        Settings the user chose for those (blocks, floor, patience, fine-tune epochs, augmentation)
        are kept; without augmentation, each training image gets cached views with horizontal flips.
        """
        augmented = {} if self.augmentations else {"augmentations": AUTO_AUGMENTATIONS,
                                                    "augment_views": AUTO_VIEWS}
        return dataclasses.replace(
            self, **dict(head or {}), **augmented, strategy="frozen_then_finetune",
            fine_tune_epochs=self.fine_tune_epochs or self.epochs,
            fine_tune_blocks=self.fine_tune_blocks or AUTO_FINE_TUNE_BLOCKS,
            discriminative_floor=min(self.discriminative_floor, AUTO_DISCRIMINATIVE_FLOOR),
            fine_tune_schedule="cosine",
            early_stopping_patience=self.early_stopping_patience or AUTO_PATIENCE)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a training run's result.

    ``name`` is a label for people and is left out of :meth:`key`.
    """

    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    name: str = ""

    def validate(self) -> RunSpec:
        _check_text(self)
        self.dataset.validate()
        self.backbone.validate()
        self.train.validate()
        if self.train.strategy == "scratch" and self.backbone.weights != "none":
            raise ConfigError(
                "The scratch strategy trains from random weights.",
                "Set weights to 'none' (RunSpec.for_strategy does this for you).",
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_types(self) -> RunSpec:
        """Refuse values of the wrong type, and nothing else :meth:`validate` checks.

        For specs read back from files (a run's ``run.json``), whose paths may name folders that
        are outside the allowed ones now.

        Raises:
            ConfigError: A value is not of its field's type (see :func:`matches_type`).
        """
        for part in (self.dataset, self.backbone, self.train):
            _check_types(part)
        return self

    def with_absolute_paths(self) -> RunSpec:
        """The same run with every server path made absolute against this process's folder and home.

        For a front end where a relative path means something (the CLI, run by a person in a
        folder); :meth:`validate` refuses relative paths, which mean another folder elsewhere.
        """
        return dataclasses.replace(self, dataset=self.dataset.with_absolute_paths(),
                                   backbone=self.backbone.with_absolute_paths())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        """Read a spec from JSON; values of the wrong type are left for :meth:`validate` to name.

        Raises:
            ConfigError: ``data`` is not an object of ``dataset``, ``backbone`` and ``train``
                objects, or names a setting no spec has.
        """
        if not isinstance(data, Mapping) or not all(
                isinstance(data.get(part, {}), Mapping) for part in ("dataset", "backbone", "train")):
            raise ConfigError("The run specification is malformed: it must be an object of "
                              "dataset, backbone and train settings.")
        try:
            train = dict(data.get("train", {}))
            if isinstance(train.get("augmentations"), list):
                train["augmentations"] = tuple(train["augmentations"])
            return cls(
                dataset=DatasetSpec(**data.get("dataset", {})),
                backbone=BackboneSpec(**data.get("backbone", {})),
                train=TrainSpec(**train),
                name=str(data.get("name", "")),
            )
        except TypeError as exc:
            raise ConfigError(f"The run specification is malformed: {exc}.") from exc

    def key(self) -> str:
        """Stable hash of everything but the name: equal specs train equal models."""
        payload = self.to_dict()
        payload.pop("name")
        for part, defaults in ADDED_LATER.items():
            for name, default in defaults.items():
                if payload[part][name] == default:
                    del payload[part][name]
        payload["spec_version"] = SPEC_VERSION
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_strategy(self, strategy: str) -> RunSpec:
        """The same run with another strategy; scratch implies random weights."""
        weights = "none" if strategy == "scratch" else (
            "imagenet" if self.backbone.weights == "none" else self.backbone.weights
        )
        return dataclasses.replace(
            self,
            train=dataclasses.replace(self.train, strategy=strategy),
            backbone=dataclasses.replace(self.backbone, weights=weights),
        )

    def describe(self) -> str:
        return f"{self.train.strategy} · {self.backbone.name} · {self.dataset.source}"
