"""A spec's data and the frozen backbone's pooled features of every split, without training.

The LR range test, the head search and the data audit all work on what a frozen run trains
on: pooled features of the frozen backbone, one row per image, read from the feature store
(computed, and stored for later runs, only for images it lacks). Rows stay on disk; a split
is read a batch at a time or, for the few arrays a search needs, once into memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from tlcore.backbones import build_backbone
from tlcore.config import RunSpec, TrainSpec
from tlcore.data import DatasetBundle, Split
from tlcore.data.assemble import bundle_from_catalogue
from tlcore.data.registry import list_dataset
from tlcore.data.rows import RowArray
from tlcore.training.cached_stage import CachedFeatureStage, weights_identity
from tlcore.training.model import FreezePolicy, build_classifier
from tlcore.training.observer import NoteKeeper, PassTimer, TrainingObserver

FROZEN = FreezePolicy(trainable_top=0)


@dataclass
class FrozenFeatures:
    """The data of a spec and its frozen backbone's pooled features per split.

    Attributes:
        spec: The run these features are for (its strategy is ignored: the backbone is frozen).
        bundle: The splits, as a run of this spec would train, validate and test on.
        model: A fresh classifier of the spec, whose head layers the features feed.
        stage: The cached stage: its ``plan.upper`` is the head on pooled features.
        train: Pooled features of the training split, in the split's order.
        val: Of the validation split.
        test: Of the test split.
    """

    spec: RunSpec
    bundle: DatasetBundle
    model: keras.Model
    stage: CachedFeatureStage
    train: RowArray
    val: RowArray
    test: RowArray

    @property
    def width(self) -> int:
        return int(self.stage.plan.lower.output_shape[-1])

    def split_rows(self, split: Split) -> RowArray:
        """The rows of one of the bundle's splits (compared by identity, not by name)."""
        for candidate, rows in ((self.bundle.train, self.train), (self.bundle.val, self.val),
                                (self.bundle.test, self.test)):
            if candidate is split:
                return rows
        raise ValueError("not a split of this bundle")


def frozen_features(spec: RunSpec, observer: TrainingObserver | None = None) -> FrozenFeatures:
    """Load ``spec``'s data and the frozen backbone's pooled features of every split.

    Images the pixel store lacks are decoded, and features the feature store lacks are
    computed as they are decoded, exactly as a frozen run would, so a frozen run afterwards
    (or before) reads them back instead.

    The spec's strategy, augmentation and feature-cache switch are ignored: these are the
    features of its backbone frozen, whatever the spec does with them.
    """
    train = spec.train
    observer = observer or TrainingObserver()
    plain = TrainSpec(**{**train.__dict__, "augmentations": (), "augment_views": 0})
    spec = RunSpec(spec.dataset, spec.backbone, plain, spec.name)
    catalogue = list_dataset(spec.dataset)
    resolved = build_backbone(spec.backbone, spec.dataset.image_size)
    model = build_classifier(resolved, len(catalogue.class_names), spec.dataset.image_size, spec.train)
    stage = CachedFeatureStage.for_policy(spec, model, FROZEN, weights_identity(resolved))
    assert stage is not None  # a frozen backbone without augmentation always has the pool cut
    sink = stage.features.sink()
    bundle = bundle_from_catalogue(catalogue, spec.dataset, PassTimer("Decoding images", observer.on_pass),
                                   on_decoded=sink.add)
    note = NoteKeeper(observer)
    summary = sink.close()
    if sink.count:
        note(summary)
    stage.features.on_pass = observer.on_pass
    rows = [stage.features.compute(split) for split in (bundle.train, bundle.val, bundle.test)]
    return FrozenFeatures(spec, bundle, model, stage, *rows)


def read_all(rows: RowArray, batch: int = 4096) -> np.ndarray:
    """Every row in memory as float32: for the splits a head search fits on many times over."""
    return np.concatenate([np.asarray(rows[start:start + batch]) for start in range(0, len(rows), batch)]
                          or [np.zeros((0, *rows.shape[1:]), np.float32)])
