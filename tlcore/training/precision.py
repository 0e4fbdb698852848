"""Mixed precision on GPUs: layers compute in float16, variables and the softmax stay float32.

On a GPU with tensor cores, ``mixed_float16`` roughly halves activation memory and speeds up
convolutions and matrix products. The classifier's softmax layer is float32 in every policy
(:func:`tlcore.training.model.build_head`), so probabilities and the loss keep full precision,
and Keras wraps the optimizer in a ``LossScaleOptimizer`` when it compiles a model built under
the policy, so small float16 gradients do not underflow to zero.

On a CPU it is refused rather than ignored. It buys nothing there: this server's CPU has no
float16 arithmetic units, and a MobileNetV2 forward pass took as long under the policy as in
float32 (``docs/scale-out.md``), while the feature pass loses its BatchNorm folding (which is
float32 only) and the weights differ from a float32 run beyond float precision. Ignoring it
would be worse: a run that quietly trained in float32 would carry a spec saying otherwise, to
be reused by a later run that asked for float16.

The policy is global in Keras, so it is set only while a run builds and trains its models, and
the previous one is restored afterwards: a worker's next run starts from float32 again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

from tlcore.errors import ConfigError
from tlcore.training.distribution import Placement

MIXED_POLICY = "mixed_float16"


def precision_policy(mixed: bool, placement: Placement) -> contextlib.AbstractContextManager[None]:
    """The dtype policy a run builds and trains under: float32 unchanged, or mixed float16.

    Checked at once, not on entering the context, so a refused setting stops the run before
    any work.

    Raises:
        ConfigError: Mixed precision is asked for without a GPU to run it.
    """
    if not mixed:
        return contextlib.nullcontext()
    if not placement.on_gpu:
        raise ConfigError(
            f"Mixed precision ({MIXED_POLICY}) needs a GPU; this run trains on "
            f"{', '.join(placement.devices)}.",
            "Turn mixed precision off, or train on a GPU server: on a CPU it trains no faster and "
            "gives up the float32 feature pass.",
        )
    return _global_policy(MIXED_POLICY)


@contextlib.contextmanager
def _global_policy(name: str) -> Iterator[None]:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def describe_precision(mixed: bool) -> str | None:
    """A line for the run's log under mixed precision; None in float32."""
    if not mixed:
        return None
    return (f"Mixed precision ({MIXED_POLICY}): layers compute in float16, variables and the softmax "
            "layer stay float32, and the loss is scaled against float16 underflow.")


def features_dtype_key(model: keras.Model) -> dict[str, str]:
    """What a feature store's key adds for a frozen part that computes in another dtype.

    Float16 features differ from float32 ones well beyond the last bits, so they must not be
    read back by a float32 run (or the other way round). Float32 adds nothing, which keeps
    the keys of every store made before mixed precision existed.
    """
    dtype = str(model.outputs[0].dtype)
    return {} if dtype == "float32" else {"dtype": dtype}
