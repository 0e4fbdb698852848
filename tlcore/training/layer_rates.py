"""Discriminative learning rates: lower backbone groups train at smaller shares of the rate.

When backbone layers train, the head keeps the stage's rate, the top unfrozen group of layers
a smaller share, and each group below a smaller one again, spread geometrically down to
``discriminative_floor`` for the lowest (fastai's ``slice(lr * floor, lr)``: with two groups
and floor 0.01 the shares are 0.1 and 0.01). Pretrained low layers hold general features
that large steps would wreck; the top and the new head have the most to learn.

How: Keras 3 optimizers update each variable in ``update_step(gradient, variable,
learning_rate)``, one call per variable inside ``apply``. :class:`LayerRates` is a mixin over
Keras' own Adam, AdamW, SGD and RMSprop that multiplies ``learning_rate`` by the variable's
share there, and applies decoupled weight decay with the same scaled rate (as PyTorch's and
fastai's per-group rates do) instead of Keras' one rate for every variable. Everything else
(moments, bias correction, schedules, ``fit``, steps per call) stays Keras' own.

Why not the alternatives: scaling gradients in a custom ``train_step`` is not a learning
rate for Adam or RMSprop, which divide the scale out again, and momentum and weight decay
would see the scaled values; several optimizers need a ``train_step`` that splits the
gradients and lose what ``fit`` does for one optimizer (saving it, building its state first,
loss scaling).

Groups are the backbone's blocks (:func:`tlcore.backbones.blocks.layer_groups`; a TF Hub
model is one group). Shares are kept by variable path (``block_16_project/kernel``), which is
what the optimizer's config holds, so a saved model or a model on cached features (whose upper
part shares the backbone's variables) finds them again. With floor 1 the loop never builds
these classes: the optimizer is Keras' own, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from tlcore.backbones.blocks import layer_groups
from tlcore.config import RunSpec
from tlcore.training.model import FreezePolicy, backbone_of


def group_shares(group_count: int, floor: float) -> list[float]:
    """Each group's share of the stage's rate, top group first: ``floor ** (k / n)``.

    The head (share 1) and ``n`` groups make ``n + 1`` rates spaced evenly on a log scale
    from 1 down to ``floor``, which the lowest group gets.
    """
    return [floor ** ((k + 1) / group_count) for k in range(group_count)]


def rate_multipliers(groups: Sequence[Sequence[keras.layers.Layer]], floor: float) -> dict[str, float]:
    """Variable path -> share of the rate for every weight of the groups (top group first).

    Variables not named here (the head) train at the stage's rate.

    Raises:
        ValueError: Two groups hold variables with one path, which would make the share of
            each ambiguous (Keras gives every layer of a model its own name).
    """
    multipliers: dict[str, float] = {}
    for share, group in zip(group_shares(len(groups), floor), groups, strict=True):
        for layer in group:
            for variable in layer.weights:
                if multipliers.setdefault(variable.path, share) != share:
                    raise ValueError(f"Variable path {variable.path!r} is in two layer groups.")
    return multipliers


class LayerRates:
    """Mixin for a Keras optimizer: each variable's step uses its share of the learning rate.

    Args:
        rate_multipliers: Variable path -> share of the learning rate; others get 1.
    """

    def __init__(
        self, *args: Any, rate_multipliers: Mapping[str, float] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rate_multipliers = {str(path): float(share) for path, share in (rate_multipliers or {}).items()}
        self._shares: tuple[float, ...] = ()

    def build(self, variables: list) -> None:
        super().build(variables)
        self._shares = tuple(self.rate_multipliers.get(v.path, 1.0) for v in self._trainable_variables)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        share = self._shares[self._get_variable_index(variable)]
        rate = learning_rate if share == 1.0 else keras.ops.multiply(learning_rate, share)
        if self.weight_decay is not None and self._use_weight_decay(variable):
            decay = keras.ops.cast(self.weight_decay, variable.dtype) * keras.ops.cast(rate, variable.dtype)
            self.assign_sub(variable, variable * decay)
        super().update_step(gradient, variable, rate)

    def _apply_weight_decay(self, variables: list) -> None:
        """Nothing here: :meth:`update_step` decays each variable at its own rate."""

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate_multipliers": dict(self.rate_multipliers)}


@keras.saving.register_keras_serializable(package="tlcore")
class LayerRateAdam(LayerRates, keras.optimizers.Adam):
    """Adam with per-variable shares of the learning rate."""


@keras.saving.register_keras_serializable(package="tlcore")
class LayerRateAdamW(LayerRates, keras.optimizers.AdamW):
    """AdamW with per-variable shares of the learning rate (and of the decay)."""


@keras.saving.register_keras_serializable(package="tlcore")
class LayerRateSGD(LayerRates, keras.optimizers.SGD):
    """SGD with per-variable shares of the learning rate."""


@keras.saving.register_keras_serializable(package="tlcore")
class LayerRateRMSprop(LayerRates, keras.optimizers.RMSprop):
    """RMSprop with per-variable shares of the learning rate."""


LAYER_RATE_CLASSES: dict[type, type] = {
    keras.optimizers.Adam: LayerRateAdam,
    keras.optimizers.AdamW: LayerRateAdamW,
    keras.optimizers.SGD: LayerRateSGD,
    keras.optimizers.RMSprop: LayerRateRMSprop,
}


def with_layer_rates(
    optimizer: keras.optimizers.Optimizer, multipliers: Mapping[str, float]
) -> keras.optimizers.Optimizer:
    """The same optimizer (every option, a schedule too) with per-variable shares of its rate.

    Raises:
        ValueError: The optimizer is not one of Keras' Adam, AdamW, SGD or RMSprop.
    """
    layered = LAYER_RATE_CLASSES.get(type(optimizer))
    if layered is None:
        raise ValueError(f"No per-layer rates for {type(optimizer).__name__}.")
    return layered.from_config({**optimizer.get_config(), "rate_multipliers": dict(multipliers)})


def stage_rate_multipliers(
    spec: RunSpec, model: keras.Model, policy: FreezePolicy
) -> dict[str, float] | None:
    """The shares of a stage's variables, or None when all train at one rate.

    None with floor 1, for a frozen backbone and for a scratch stage (random weights have
    nothing to preserve). A single unfrozen group trains at ``floor`` times the rate.
    """
    floor, top = spec.train.discriminative_floor, policy.trainable_top
    if floor >= 1.0 or not top:
        return None
    groups = [group for group in layer_groups(backbone_of(model), spec.backbone.name, top) if group]
    return rate_multipliers(groups, floor) if groups else None


def describe_rates(multipliers: Mapping[str, float], learning_rate: float) -> str:
    """The groups' rates in a few words for the run's log."""
    shares = sorted(set(multipliers.values()), reverse=True)
    return (f"{len(shares)} backbone groups from {learning_rate * shares[0]:g} down to "
            f"{learning_rate * shares[-1]:g}, the head at {learning_rate:g}")
