"""A frozen network's forward pass with each BatchNorm folded into the convolution before it.

In inference mode a BatchNormalization layer is a per-channel affine map:
``y = x * s + (beta - mean * s)`` with ``s = gamma / sqrt(variance + epsilon)``. When its only
input is a convolution without an activation, the map can be baked into that convolution's
kernel and a bias once, instead of running as separate element-wise ops over every activation
of every image. For MobileNetV2 this drops 52 layers' worth of ops: the first call (tracing)
took 0.4-0.5 s instead of 1.0-1.4 s, and images ran 25-50 % faster, with outputs equal to
float precision (``docs/benchmarks.md``, "Folding BatchNorm").

The folded kernels are copies taken when a :class:`FrozenForward` is made, so it is only for a
part of the network that stays frozen while the function is used: the feature pass of a cached
stage. Everything that is not such a pair runs as the Keras layer itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class _FoldedConvolution:
    """A convolution whose kernel and bias already include the BatchNorm that followed it."""

    layer: keras.layers.Layer
    kernel: tf.Tensor
    bias: tf.Tensor

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        layer = self.layer
        options = {"strides": layer.strides, "padding": layer.padding,
                   "data_format": layer.data_format, "dilation_rate": layer.dilation_rate}
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            outputs = keras.ops.depthwise_conv(inputs, self.kernel, **options)
        else:
            outputs = keras.ops.conv(inputs, self.kernel, **options)
        return tf.nn.bias_add(outputs, self.bias)


class FrozenForward:
    """A traced function computing ``model(x, training=False)`` with BatchNorm folded.

    Args:
        model: A functional model; functional models nested in it are folded too. Any other
            model runs through ``predict_on_batch``, unchanged.

    Attributes:
        folded: How many convolution + BatchNorm pairs were folded.
    """

    def __init__(self, model: keras.Model) -> None:
        self.folded = 0
        if _is_functional(model):
            operations = self._graph_operations(model)
            self._call: Callable[[np.ndarray], Any] = tf.function(
                lambda inputs: model._run_through_graph(  # noqa: SLF001 - see _is_functional
                    tf.cast(inputs, tf.float32), operation_fn=operations))
        else:
            self._call = lambda inputs: model.predict_on_batch(np.asarray(inputs, np.float32))

    def __call__(self, inputs: np.ndarray) -> Any:
        """The outputs for a batch of pixels, ``uint8`` or ``float32``.

        ``uint8`` pixels are cast inside the traced graph: the same values as a NumPy cast,
        without a float32 copy of every batch (four times its bytes) made on the caller's
        thread beside the decoders.
        """
        return self._call(inputs)

    def _graph_operations(self, graph: keras.Model) -> Callable[[Any], Callable[..., Any]]:
        """What ``_run_through_graph`` calls for each operation of ``graph``."""
        replacements: dict[int, Callable[..., Any]] = {}
        for conv, norm in _pairs(graph):
            replacements[id(conv)] = _fold(conv, norm)
            replacements[id(norm)] = _identity
            self.folded += 1
        for node in _nodes(graph):
            inner = node.operation
            if _is_functional(inner) and id(inner) not in replacements:
                replacements[id(inner)] = self._run_nested(inner)
        return lambda operation: replacements.get(id(operation), operation)

    def _run_nested(self, graph: keras.Model) -> Callable[..., Any]:
        operations = self._graph_operations(graph)

        def run(*args: Any, **kwargs: Any) -> Any:
            return graph._run_through_graph(  # noqa: SLF001
                args[0] if len(args) == 1 else list(args), operation_fn=operations)

        return run


def _is_functional(model: object) -> bool:
    # Keras runs a functional model node by node through ``_run_through_graph``, and lets the
    # caller choose what runs for each layer; that hook is what makes folding possible
    # without a second copy of the network.
    return isinstance(model, keras.Model) and hasattr(model, "_run_through_graph") and hasattr(
        model, "_nodes_by_depth")


def _identity(inputs: Any, *args: Any, **kwargs: Any) -> Any:
    return inputs


def _nodes(graph: keras.Model) -> list[Any]:
    return [node for nodes in graph._nodes_by_depth.values()  # noqa: SLF001
            for node in nodes if node.operation is not None and not node.is_input]


def _pairs(graph: keras.Model) -> list[tuple[keras.layers.Layer, keras.layers.Layer]]:
    """(convolution, BatchNorm) pairs of ``graph`` that can be folded.

    The convolution's output must be read by that BatchNorm alone and not be an output of the
    graph, and each layer must appear once in the graph: otherwise another reader would see
    the BatchNorm's output where it expects the convolution's.
    """
    nodes = _nodes(graph)
    appearances = Counter(id(node.operation) for node in nodes)
    readers = Counter(id(tensor) for node in nodes for tensor in node.input_tensors)
    graph_outputs = {id(tensor) for tensor in graph.outputs}
    producer = {id(tensor): node for node in nodes for tensor in node.outputs}
    pairs = []
    for node in nodes:
        norm = node.operation
        if not _foldable_norm(norm) or len(node.input_tensors) != 1:
            continue
        source = node.input_tensors[0]
        conv_node = producer.get(id(source))
        if conv_node is None or not _foldable_conv(conv_node.operation):
            continue
        if readers[id(source)] != 1 or id(source) in graph_outputs:
            continue
        if appearances[id(norm)] != 1 or appearances[id(conv_node.operation)] != 1:
            continue
        pairs.append((conv_node.operation, norm))
    return pairs


def _foldable_norm(layer: object) -> bool:
    return (
        isinstance(layer, keras.layers.BatchNormalization)
        and layer.axis in (-1, 3)
        and layer.compute_dtype == "float32"
    )


def _foldable_conv(layer: object) -> bool:
    plain = isinstance(layer, keras.layers.Conv2D) and layer.groups == 1
    if not (plain or isinstance(layer, keras.layers.DepthwiseConv2D)):
        return False
    return (
        layer.data_format == "channels_last"
        and keras.activations.serialize(layer.activation) == "linear"
        and layer.compute_dtype == "float32"
    )


def _fold(conv: keras.layers.Layer, norm: keras.layers.BatchNormalization) -> _FoldedConvolution:
    """Kernel and bias of ``conv`` followed by ``norm`` in inference mode, in float64 first."""
    variance = np.asarray(norm.moving_variance, np.float64)
    mean = np.asarray(norm.moving_mean, np.float64)
    gamma = np.asarray(norm.gamma, np.float64) if norm.scale else np.ones_like(mean)
    beta = np.asarray(norm.beta, np.float64) if norm.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + norm.epsilon)
    kernel = np.asarray(conv.kernel, np.float64)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    bias = beta - mean * scale
    if conv.use_bias:
        bias = bias + np.asarray(conv.bias, np.float64) * scale
    return _FoldedConvolution(conv, tf.constant(kernel, tf.float32), tf.constant(bias, tf.float32))
