"""Train a stage on cached outputs of the frozen part of the network instead of on images.

With BatchNorm in inference mode, everything below the first trainable layer computes the same
output for an image in every epoch. So a stage can be split at a single tensor ("the cut"):
the part below is run once per image (and kept on disk, see :mod:`tlcore.training.features`), the part
above is a smaller model that *shares its layers* with the full classifier, so training it
trains the classifier itself. Same seed, same result as training on images, at the cost of one
forward pass instead of one per epoch.

Augmentation changes the input every epoch, which defeats this. Two ways out, chosen by
``TrainSpec.augment_views``: 0 trains on images (augmented on the fly, a full forward pass per
epoch), N > 0 precomputes N augmented views of every training image and epoch ``e`` uses view
``e % N`` (N forward passes in all, less variety than fresh augmentation).

:class:`CachedFeatureStage` hands the loop the same :class:`~tlcore.training.stages.PreparedStage`
as a stage on images, so everything that is particular to cached features stays in this module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tlcore.backbones import ResolvedBackbone
from tlcore.config import RunSpec
from tlcore.data import Split
from tlcore.data.cache_keys import ids_fingerprint
from tlcore.data.pixels import decoder_tag
from tlcore.data.rows import RowArray, RowsEvicted, RowStore, RowWriter
from tlcore.training.datasets import as_tf_dataset, oversampled_dataset, views_reader
from tlcore.training.distribution import (
    replicated_probabilities,
    replicating_strategy,
    shuffled_batches,
    split_over_replicas,
)
from tlcore.training.features import feature_cache_limit, feature_store
from tlcore.training.folding import FrozenForward
from tlcore.training.forward_streams import FORWARD_STREAMS, ForwardStreams
from tlcore.training.model import (
    BACKBONE_LAYER,
    FreezePolicy,
    apply_head_after_pool,
    build_augmentation,
    preprocess_of,
)
from tlcore.training.observer import PassProgress, PassTimer
from tlcore.training.precision import features_dtype_key
from tlcore.training.stages import PreparedStage, Stage, StageInputs

EVICTION_RETRIES = 3
FEATURE_BATCH = 16
"""Images per call of the frozen part. Small batches keep a depthwise network's activations in
the CPU's caches: MobileNetV2 ran at 345-390 images/s with 16, against 240-260 with 64
(``bench/frozen_vs_recipe.py``'s diagnostic table), and pad at most 15 images per split."""


@dataclass
class CutPlan:
    """Where a stage's network is split, and the two halves.

    ``fold_batchnorm`` says whether the lower half runs with BatchNorm folded into its
    convolutions (:mod:`tlcore.training.folding`). Only below the head: folding moves outputs in the
    last bits, which a dense head does not notice, but training backbone layers on such
    features amplifies it (one of eleven validation images flipped after two epochs in
    ``test_cached_path_trains_the_same_model_as_the_image_path``), and a cached stage must
    train like the image path.
    """

    cut_name: str
    lower: keras.Model
    upper: keras.Model
    fold_batchnorm: bool = False


def last_single_tensor_cut(backbone: keras.Model, first_trainable: int) -> int | None:
    """Index of the latest layer below ``first_trainable`` whose output is the only tensor
    that later layers read from the part before it, or None when there is none worth using."""
    index = {layer.name: i for i, layer in enumerate(backbone.layers)}
    parents = []
    for layer in backbone.layers:
        nodes = layer._inbound_nodes  # noqa: SLF001 - Keras exposes the graph only this way
        if len(nodes) != 1:
            return None
        parents.append([index[p.operation.name] for p in nodes[0].parent_nodes])
    count = len(backbone.layers)
    for cut in range(first_trainable - 1, 0, -1):
        if all(min(parents[j], default=cut) >= cut for j in range(cut + 1, count)):
            return cut
    return None


def plan_cut(model: keras.Model, policy: FreezePolicy) -> CutPlan | None:
    """Split the classifier below its trainable part, or None when that is not possible."""
    head_input = model.get_layer("pool")
    backbone = model.get_layer(BACKBONE_LAYER)
    preprocess = preprocess_of(model)
    images = keras.Input(model.input_shape[1:], name="image")
    if policy.trainable_top == 0:
        features = head_input(backbone(preprocess(images)))
        lower = keras.Model(images, features, name="frozen_lower")
        upper_input = keras.Input(features.shape[1:], name="features")
        upper = keras.Model(upper_input, apply_head_after_pool(model, upper_input), name="trainable_upper")
        return CutPlan("pool", lower, upper, fold_batchnorm=True)
    if policy.trainable_top is None:
        return None
    first_trainable = len(backbone.layers) - policy.trainable_top
    cut = last_single_tensor_cut(backbone, first_trainable)
    if cut is None:
        return None
    cut_tensor = backbone.layers[cut].output
    backbone_lower = keras.Model(backbone.input, cut_tensor)
    backbone_upper = keras.Model(cut_tensor, backbone.output)
    lower = keras.Model(images, backbone_lower(preprocess(images)), name="frozen_lower")
    upper_input = keras.Input(cut_tensor.shape[1:], name="features")
    pooled = head_input(backbone_upper(upper_input))
    upper = keras.Model(upper_input, apply_head_after_pool(model, pooled), name="trainable_upper")
    return CutPlan(backbone.layers[cut].name, lower, upper)


def can_cache(spec: RunSpec, policy: FreezePolicy) -> bool:
    train = spec.train
    return (
        train.feature_cache
        and policy.trainable_top is not None
        and (not train.augmentations or train.augment_views > 0)
    )


class StageFeatures:
    """Computes the lower half's outputs of the images the feature store lacks; reads the rest.

    Without augmentation a row depends on its image alone, so rows are kept per image
    identity and a grown dataset forwards only its new images. An augmented view depends on
    the batch it was drawn in, so views are kept per split (its ids are part of the key).
    """

    def __init__(self, spec: RunSpec, plan: CutPlan, weights_id: str) -> None:
        self.on_pass: Callable[[PassProgress], None] = lambda progress: None
        self.started = time.time() - 1  # rows this run reads are never evicted by it
        self.spec = spec
        self.plan = plan
        self.weights_id = weights_id
        self.seconds = 0.0
        self.beside_training_seconds = 0.0
        self.reused = 0
        self.computed = 0
        self._forward: Callable[[np.ndarray], object] | None = None
        self.folded = 0

    def sink(self) -> FeatureSink:
        """Somewhere to hand images as they are decoded, so their features are computed then."""
        store = feature_store(self._namespace(None, None), tuple(self.plan.lower.output_shape[1:]))
        return FeatureSink(self._frozen_forward(), store, streams_for(self.plan.lower))

    def _namespace(self, split: Split | None, view: int | None) -> dict[str, object]:
        return {
            "image_size": self.spec.dataset.image_size,
            "pixels": decoder_tag(),
            "backbone": self.spec.backbone.__dict__,
            "weights": self.weights_id,
            "cut": self.plan.cut_name,
            "keras": keras.__version__,
            "forward": "bn-folded" if self.plan.fold_batchnorm else "keras",
            **features_dtype_key(self.plan.lower),
            "view": None if view is None else {
                "index": view,
                "augment": list(self.spec.train.augmentations),
                "seed": self.spec.train.seed,
                "ids": ids_fingerprint(split.identities),
            },
        }

    def compute(self, split: Split, view: int | None = None) -> RowArray:
        """The split's rows, forwarding only images whose rows are not stored yet."""
        started = time.perf_counter()
        store = feature_store(self._namespace(split, view), tuple(self.plan.lower.output_shape[1:]))
        forwarded = 0
        for attempt in range(EVICTION_RETRIES):
            todo = _first_of_each(split.identities, set(store.missing(split.identities)))
            if len(todo):
                self._forward_into(store, split, todo, view)
            forwarded += len(todo)
            try:
                rows = store.array(split.identities)
                break
            except RowsEvicted:  # another process evicted rows just checked: forward them again
                if attempt == EVICTION_RETRIES - 1:
                    raise
        store.evict(feature_cache_limit(), keep_since=self.started)
        self.computed += forwarded
        self.reused += max(0, len(split) - forwarded)
        self.seconds += time.perf_counter() - started
        return rows

    def _forward_into(self, store: RowStore, split: Split, positions: np.ndarray, view: int | None) -> None:
        augment = None if view is None else build_augmentation(
            self.spec.train.augmentations, self.spec.train.seed + 1000 * (view + 1))
        forward = self._frozen_forward()
        timer = PassTimer("Computing features" + ("" if view is None else f" (augmented view {view + 1})"),
                          self.on_pass)
        streams: ForwardStreams[np.ndarray] = ForwardStreams(
            lambda images: _padded_call(forward, images), streams_for(self.plan.lower))
        with store.writer() as writer:

            def keep(finished: Iterator[tuple[np.ndarray, np.ndarray]]) -> None:
                for batch, rows in finished:
                    for position, row in zip(batch, rows, strict=True):
                        writer.add(split.identities[position], row)

            try:
                for start in range(0, len(positions), FEATURE_BATCH):
                    timer(start, len(positions))
                    batch = positions[start:start + FEATURE_BATCH]
                    images = np.asarray(split.images[batch])
                    if augment is not None:
                        images = keras.ops.convert_to_numpy(augment(images.astype(np.float32), training=True))
                    keep(streams.put(batch, images))
                keep(streams.finish())
            finally:
                streams.close()
        timer(len(positions), len(positions))

    def _frozen_forward(self) -> Callable[[np.ndarray], object]:
        """Built on first need: a run whose features are all cached never pays for it.

        It takes ``uint8`` pixels as stored, or ``float32`` ones (augmented views). Under a
        distribution strategy each batch is split over the devices (rows of one image do
        not depend on the others, so the store is shared with one-device runs).
        """
        if self._forward is None:
            if self.plan.fold_batchnorm:
                forward = FrozenForward(self.plan.lower)
                self.folded = forward.folded
                self._forward = split_over_replicas(self.plan.lower, forward)
            else:
                keras_forward = split_over_replicas(self.plan.lower)
                self._forward = lambda batch: keras_forward(np.asarray(batch, np.float32))
        return self._forward

    def compute_beside_training(self, split: Split) -> Future[RowArray]:
        """``compute`` on a thread of its own, for a split that is needed only after ``fit``.

        Training a head on cached features spends most of its time in Python on one core, so
        the frozen part's kernels run beside it on the other instead of delaying the first
        epoch. Call it after the other splits: those are computed on the calling thread.
        """
        def run() -> RowArray:
            started = time.perf_counter()
            rows = self.compute(split)
            self.beside_training_seconds += time.perf_counter() - started
            return rows

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tlcore-features")
        try:
            return executor.submit(run)
        finally:
            executor.shutdown(wait=False)  # the thread ends once ``run`` returns

    def training_views(self, split: Split) -> list[RowArray]:
        views = self.spec.train.augment_views if self.spec.train.augmentations else 0
        if views == 0:
            return [self.compute(split)]
        return [self.compute(split, view=v) for v in range(views)]

    def summary(self) -> str:
        return (
            f"Frozen part up to {self.plan.cut_name} run once per image"
            + (f" (BatchNorm folded into {self.folded} convolutions)" if self.folded else "")
            + f": {self.computed:,} image(s) forwarded, {self.reused:,} read from the feature store, "
            f"{self.seconds:.1f} s"
            + (f", {self.beside_training_seconds:.1f} s of it while the head trained."
               if self.beside_training_seconds else ".")
        )


class FeatureSink:
    """Forwards images through the frozen part as the decode pass hands them over.

    The decoding threads run below the forward passes (:data:`~tlcore.data.catalogue.DECODER_NICENESS`)
    and take what those leave of the cores, so a cold run decodes and forwards each image
    once, overlapped, instead of one pass after the other. Rows land in the same feature store
    the stage reads.
    """

    def __init__(self, forward: Callable[[np.ndarray], object], store: RowStore,
                 streams: int = FORWARD_STREAMS) -> None:
        self.streams: ForwardStreams[list[str]] = ForwardStreams(
            lambda batch: _padded_call(forward, batch), streams)
        self.writer = RowWriter(store)
        self.count = 0
        self.seconds = 0.0
        self._started: float | None = None
        self._identities: list[str] = []
        self._images: list[np.ndarray] = []

    def add(self, identity: str, pixels: np.ndarray) -> None:
        if self._started is None:
            self._started = time.perf_counter()
        self._identities.append(identity)
        self._images.append(pixels)
        if len(self._images) == FEATURE_BATCH:
            self._forward_batch()

    def close(self) -> str:
        """Forward what is left and store every row; returns a line for the run's log."""
        try:
            if self._images:
                self._forward_batch()
            self._store(self.streams.finish())
        finally:
            self.streams.close()
            self.writer.close()
        if self._started is not None:
            self.seconds = time.perf_counter() - self._started
        return (f"Frozen features of {self.count:,} image(s) computed as they were decoded "
                f"({self.seconds:.1f} s, up to {self.streams.streams} forward passes at a time "
                "beside the decoding).")

    def _forward_batch(self) -> None:
        self._store(self.streams.put(self._identities, np.stack(self._images)))
        self._identities, self._images = [], []

    def _store(self, finished: Iterator[tuple[list[str], np.ndarray]]) -> None:
        for identities, rows in finished:
            for identity, row in zip(identities, rows, strict=True):
                self.writer.add(identity, row)
            self.count += len(identities)


def streams_for(model: keras.Model) -> int:
    """Forward calls to run at once: one under a distribution strategy, whose call already
    spans every device, :data:`~tlcore.training.forward_streams.FORWARD_STREAMS` otherwise."""
    return 1 if replicating_strategy(model) is not None else FORWARD_STREAMS


def _first_of_each(identities: list[str], wanted: set[str]) -> np.ndarray:
    """Positions of the first image of each wanted identity (copies are forwarded once)."""
    positions = []
    for position, identity in enumerate(identities):
        if identity in wanted:
            wanted.discard(identity)
            positions.append(position)
    return np.array(positions, dtype=np.int64)


def _padded_call(fn: Callable[[np.ndarray], object], batch: np.ndarray) -> np.ndarray:
    """``fn`` on a batch padded to ``FEATURE_BATCH`` images. For the frozen part, ``fn`` is
    traced (a :class:`~tlcore.training.folding.FrozenForward` or ``predict_on_batch``): twice
    the throughput of eager calls, at a seventh of the memory (bench/frozen_vs_recipe.py).

    Each row's output depends on that row alone, and one input shape means one trace of the
    network instead of two.
    """
    count = len(batch)
    if count < FEATURE_BATCH:
        padding = np.zeros((FEATURE_BATCH - count, *batch.shape[1:]), batch.dtype)
        batch = np.concatenate([batch, padding])
    return keras.ops.convert_to_numpy(fn(batch))[:count]


def views_dataset(
    views: list[RowArray],
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
) -> tuple[tf.data.Dataset, int]:
    """Epoch ``e`` reads view ``e % len(views)`` in its own shuffled order.

    Returns the dataset and the number of steps per epoch (it spans all epochs).
    """
    count = len(views[0])
    steps = math.ceil(count / batch_size)
    targets = tf.constant(labels)
    read = views_reader(views)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        order = tf.data.Dataset.range(count).shuffle(count, seed=seed + epoch)
        view = tf.math.floormod(epoch, len(views))
        return order.batch(batch_size).map(lambda idx: (read(view, idx), tf.gather(targets, idx)))

    dataset = tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(one_epoch)
    return dataset.prefetch(tf.data.AUTOTUNE), steps


def weights_identity(resolved: ResolvedBackbone) -> str:
    """What the backbone's weights are, for feature-cache keys: a changed file is a new key."""
    loaded = resolved.weights_loaded
    source = loaded[len("hub:"):] if loaded.startswith("hub:") else loaded
    path = Path(source)
    if path.exists():
        stat = path.stat()
        return f"{loaded}|{stat.st_size}|{stat.st_mtime_ns}"
    return loaded


class CachedFeatureStage:
    """Trains the part of the classifier above the cut on the frozen part's cached outputs.

    Args:
        plan: Where the classifier is cut, and its two halves.
        features: Computes (or reads back) the lower half's outputs.
    """

    def __init__(self, plan: CutPlan, features: StageFeatures) -> None:
        self.plan = plan
        self.features = features

    @classmethod
    def for_policy(
        cls, spec: RunSpec, model: keras.Model, policy: FreezePolicy, weights_id: str
    ) -> CachedFeatureStage | None:
        """The cached stage for a classifier frozen by ``policy``, or None when the stage has
        to train on images (no cache wanted, augmentation on the fly, no usable cut)."""
        if not can_cache(spec, policy):
            return None
        plan = plan_cut(model, policy)
        return None if plan is None else cls(plan, StageFeatures(spec, plan, weights_id))

    def prepare(self, inputs: StageInputs) -> PreparedStage:
        """Compute the features: train and validation now, the test split (last stage only)
        beside training."""
        train, bundle, features = inputs.spec.train, inputs.bundle, self.features
        features.on_pass = inputs.on_pass
        views = features.training_views(bundle.train)
        val_data = as_tf_dataset(features.compute(bundle.val), inputs.targets(bundle.val),
                                 train.batch_size, shuffle_seed=None)
        test = features.compute_beside_training(bundle.test) if inputs.is_last else None
        targets, steps = inputs.targets(bundle.train), None
        if train.oversample:  # the same draws as on images: same seed, same rows
            train_data, steps = oversampled_dataset(views, targets, bundle.train.labels, train.batch_size,
                                                    train.seed, inputs.first_epoch, inputs.epochs)
        elif len(views) == 1:
            train_data, steps = shuffled_batches(self.plan.upper, views[0], targets, train.batch_size,
                                                 train.seed, inputs.epochs)
        else:
            train_data, steps = views_dataset(views, targets, train.batch_size, train.seed,
                                              inputs.first_epoch, inputs.epochs)
        return PreparedStage(
            model=self.plan.upper,
            train_data=train_data,
            val_data=val_data,
            steps_per_epoch=steps,
            steps_per_execution=steps_per_call(inputs.stage, len(bundle.train), train.batch_size),
            trained_on="cached features",
            after_fit=lambda: self._after_fit(test, inputs.note),
        )

    def _after_fit(self, test: Future[RowArray] | None, note: Callable[[str], None]) -> np.ndarray | None:
        probabilities = None if test is None else replicated_probabilities(self.plan.upper, test.result())
        note(self.features.summary())
        return probabilities


def steps_per_call(stage: Stage, train_images: int, batch_size: int) -> int:
    """Training steps per call into TensorFlow: a whole epoch when only the head trains, else one.

    A dense head's step over cached features costs microseconds, so Keras' per-step Python
    work made up most of such an epoch (about 0.3 s of a 10-epoch run measured by
    bench/frozen_vs_recipe.py). The weights come out the same; progress and stop requests
    then move once per epoch, which for such a stage takes milliseconds per thousand images.
    Stages that train backbone layers keep per-batch progress and stops.
    """
    if stage.policy.trainable_top == 0:
        return max(1, math.ceil(train_images / batch_size))
    return 1
