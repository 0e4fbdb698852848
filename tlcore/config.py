"""Run configuration as frozen dataclasses.

A run is fully described by a :class:`RunSpec`; its :meth:`RunSpec.key` is the hash of its
canonical JSON, which is how the store recognises a run that was already trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from tlcore.errors import ConfigError
from tlcore.paths import resolve_weights_path

STRATEGIES = ("scratch", "frozen", "finetune", "frozen_then_finetune")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
AUGMENTATIONS = ("flip", "rotation", "zoom", "contrast", "translation")
SOURCE_KINDS = ("builtin", "tfds", "folder", "zip")

# Bumped whenever training code changes what a spec produces, so old runs are not reused.
SPEC_VERSION = 1


def _require(condition: bool, message: str, hint: str = "") -> None:
    if not condition:
        raise ConfigError(message, hint)


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

    source: str = "builtin:shapes"
    subset: float = 1.0
    image_size: int = 160
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42
    data_dir: str | None = None

    @property
    def kind(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def location(self) -> str:
        return self.source.split(":", 1)[1] if ":" in self.source else ""

    def validate(self) -> None:
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
        _require(0 < self.subset <= 1, f"Subset must be in (0, 1], got {self.subset}.")
        _require(
            16 <= self.image_size <= 1024,
            f"Image size must be between 16 and 1024 pixels, got {self.image_size}.",
        )
        _require(
            0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
            and self.val_fraction + self.test_fraction < 0.9,
            "Validation and test fractions must each be in (0, 1) and leave at least 10 % "
            "for training.",
        )


@dataclass(frozen=True)
class BackboneSpec:
    """Which pretrained network to build on.

    Attributes:
        name: A catalogue name (``mobilenet_v2``) or ``hub:URL_OR_FOLDER`` for TF Hub.
        alpha: Width multiplier of the MobileNet family; ``None`` means the default.
        weights: ``imagenet``, ``none`` or a path to a weights file.
    """

    name: str = "mobilenet_v2"
    alpha: float | None = None
    weights: str = "imagenet"

    @property
    def is_hub(self) -> bool:
        return self.name.startswith("hub:")

    def validate(self) -> None:
        """Check the settings, and that any file named lies inside the allowed folders.

        The path check runs here as well as where the file is read, so that a spec naming a
        file outside :func:`~tlcore.paths.weights_roots` is refused before it is queued.

        Raises:
            ConfigError: A setting is impossible.
            BackboneError: A weights file or SavedModel folder is outside the allowed folders.
        """
        _require(bool(self.name), "A backbone name is required.")
        _require(bool(self.weights), "Weights must be 'imagenet', 'none' or a file path.")
        _require(
            self.alpha is None or 0 < self.alpha <= 2,
            f"Width multiplier alpha must be in (0, 2], got {self.alpha}.",
        )
        for location in self.local_files():
            resolve_weights_path(location)

    def local_files(self) -> list[str]:
        """Paths on the server this backbone reads: a weights file, a local SavedModel folder."""
        handle = self.name[len("hub:"):].strip() if self.is_hub else ""
        files = [handle] if handle and "://" not in handle else []
        return files + ([self.weights] if self.weights not in ("imagenet", "none") else [])


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
    """

    strategy: str = "frozen"
    epochs: int = 5
    fine_tune_epochs: int = 0
    fine_tune_layers: int | None = None
    fine_tune_fraction: float = 0.25
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    batch_size: int = 32
    optimizer: str = "adam"
    label_smoothing: float = 0.0
    class_weights: bool = False
    early_stopping_patience: int = 0
    dropout: float = 0.2
    augmentations: tuple[str, ...] = ()
    feature_cache: bool = True
    augment_views: int = 0
    seed: int = 42

    def validate(self) -> None:
        _require(
            self.strategy in STRATEGIES,
            f"Unknown strategy {self.strategy!r}.",
            f"Choose one of {', '.join(STRATEGIES)}.",
        )
        _require(1 <= self.epochs <= 1000, f"Epochs must be between 1 and 1000, got {self.epochs}.")
        _require(
            0 <= self.fine_tune_epochs <= 1000,
            f"Fine-tune epochs must be between 0 and 1000, got {self.fine_tune_epochs}.",
        )
        _require(
            self.strategy != "frozen_then_finetune" or self.fine_tune_epochs >= 1,
            "frozen_then_finetune needs at least one fine-tune epoch.",
            "Set fine-tune epochs to 1 or more, or choose the frozen strategy.",
        )
        _require(
            self.fine_tune_layers is None or self.fine_tune_layers >= 1,
            f"Fine-tune layers must be at least 1, got {self.fine_tune_layers}.",
        )
        _require(
            0 < self.fine_tune_fraction <= 1,
            f"Fine-tune fraction must be in (0, 1], got {self.fine_tune_fraction}.",
        )
        _require(
            0 < self.learning_rate <= 1 and 0 < self.fine_tune_learning_rate <= 1,
            "Learning rates must be in (0, 1].",
        )
        _require(
            1 <= self.batch_size <= 1024,
            f"Batch size must be between 1 and 1024, got {self.batch_size}.",
        )
        _require(
            self.optimizer in OPTIMIZERS,
            f"Unknown optimizer {self.optimizer!r}.",
            f"Choose one of {', '.join(OPTIMIZERS)}.",
        )
        _require(0 <= self.label_smoothing < 1, "Label smoothing must be in [0, 1).")
        _require(0 <= self.dropout < 1, "Dropout must be in [0, 1).")
        _require(self.early_stopping_patience >= 0, "Early-stopping patience cannot be negative.")
        _require(
            0 <= self.augment_views <= 20,
            f"Augmented views must be between 0 and 20, got {self.augment_views}.",
        )
        unknown = sorted(set(self.augmentations) - set(AUGMENTATIONS))
        _require(
            not unknown,
            f"Unknown augmentation(s): {', '.join(unknown)}.",
            f"Choose from {', '.join(AUGMENTATIONS)}.",
        )

    @property
    def total_epochs(self) -> int:
        second = self.fine_tune_epochs if self.strategy == "frozen_then_finetune" else 0
        return self.epochs + second


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a training run's result.

    ``name`` is a label for people and is left out of :meth:`key`.
    """

    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    name: str = ""

    def validate(self) -> "RunSpec":
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunSpec":
        try:
            train = dict(data.get("train", {}))
            if "augmentations" in train:
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
        payload["spec_version"] = SPEC_VERSION
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_strategy(self, strategy: str) -> "RunSpec":
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
