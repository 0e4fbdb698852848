"""TF Hub models (TF2 SavedModels) as trainable layers of a Keras 3 model.

``hub.KerasLayer`` is a Keras 2 (tf-keras) layer and cannot sit in a Keras 3 model, and
``keras.layers.TFSMLayer`` refuses to load in safe mode and passes no ``training`` argument
to the SavedModel. :class:`HubBackbone` does what both do at heart: it loads the SavedModel
with ``hub.load`` and makes the variables its call reads the layer's own weights.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import tensorflow as tf
import tensorflow_hub as hub

from tlcore.backbones.catalogue import HUB_PREFIX
from tlcore.backbones.preprocess import Preprocess
from tlcore.backbones.resolved import ResolvedBackbone
from tlcore.config import BackboneSpec, check_hub_url
from tlcore.errors import BackboneError, WeightsUnavailableError, brief_reason
from tlcore.paths import resolve_weights_path, subdir

CACHE_VARIABLE = "TFHUB_CACHE_DIR"
HUB_CACHE_DIR = "tfhub_modules"
"""Under ``TL_HOME``: where downloaded TF Hub models are kept unless ``TFHUB_CACHE_DIR`` says."""

_CACHE_LOCK = threading.Lock()


@keras.saving.register_keras_serializable(package="tlcore")
class HubBackbone(keras.layers.Layer):
    """Calls a TF2 SavedModel (TF Hub's reusable format) on float images in [0, 1].

    Each ``tf.Variable`` the SavedModel's ``__call__`` reads is wrapped in a
    ``keras.Variable``. With the TensorFlow backend, a ``keras.Variable`` given a
    ``tf.Variable`` as initial value adopts that variable instead of copying it (the same
    mechanism ``TFSMLayer`` relies on), so the SavedModel's own functions read the wrapped
    variables: gradients reach them, the optimizer updates them when the layer is trainable,
    and ``model.save`` stores their current (fine-tuned) values. Freezing is the layer's
    ``trainable`` flag, as for any Keras layer.

    The SavedModel is always called in inference mode (``training=False``), also while it
    fine-tunes: its BatchNorm layers normalise with their moving statistics and never update
    them, as the catalogue backbones' frozen BatchNorm layers do. A SavedModel traces one
    function per mode, so the mode cannot be chosen per layer: dropout inside it is off too.
    The inference-mode function reads the same trainable variables, so they still train.
    (:func:`writes_in_inference` finds SavedModels whose inference mode writes variables
    anyway.)

    Unlike ``TFSMLayer``, it loads in Keras' safe mode: the studio's ``.keras`` files are its
    own run artifacts, and the SavedModel they name is one the user chose to train with.
    Loading a ``.keras`` file from elsewhere runs the graph of whatever SavedModel it names,
    but only from the folders weights may come from (:func:`tlcore.paths.weights_roots`).

    Args:
        handle: URL or local SavedModel folder, as ``hub.load`` takes it. Kept in the config:
            a loaded ``.keras`` model reads the SavedModel from it again, then its own weights.
        **kwargs: Passed to :class:`keras.layers.Layer` (name, trainable, dtype).

    Raises:
        WeightsUnavailableError: A URL cannot be fetched (offline, not in ``TFHUB_CACHE_DIR``).
        BackboneError: The folder is outside the allowed folders or not a usable TF2 SavedModel.
    """

    def __init__(self, handle: str, **kwargs: Any) -> None:
        # SavedModel functions are traced for float32; mixed precision must not cast inputs.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.handle = handle
        self._module = _load(handle)
        if not callable(self._module):
            raise BackboneError(
                f"The SavedModel {handle} cannot be called on images.",
                "Use a TF2 SavedModel from TF Hub (for example an image feature_vector model); "
                "TF1 Hub modules and signature-only SavedModels are not supported.",
            )
        self._call_fn = self._module.__call__
        self.takes_training = "training" in inspect.signature(self._call_fn).parameters
        # Assigning a list of variables to an attribute is how a Keras layer tracks weights.
        # The order comes from the SavedModel, so a reload matches a saved .keras file.
        self.hub_variables = [
            keras.Variable(variable, trainable=variable.trainable, name=_variable_name(variable))
            for variable in _variables_read_by(self._call_fn)
        ]
        self.built = True

    def call(self, images: Any) -> Any:
        """Runs the SavedModel in inference mode; taking no ``training``, Keras passes none."""
        images = tf.cast(images, tf.float32)
        if self.takes_training:
            return self._call_fn(images, training=False)
        return self._call_fn(images)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Runs one blank image: SavedModels often leave output dimensions unknown."""
        with tf.init_scope():
            output = self.call(tf.zeros((1, *input_shape[1:])))
        if not tf.is_tensor(output):
            raise BackboneError(
                f"The SavedModel {self.handle} returns {type(output).__name__}, not one tensor.",
                "Use a feature-vector or feature-map model with a single output.",
            )
        return (None, *output.shape[1:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "handle": self.handle}


def build_hub_backbone(spec: BackboneSpec, image_size: int) -> ResolvedBackbone:
    """Builds a backbone from ``spec.name == "hub:URL_OR_FOLDER"``.

    Args:
        spec: Its name holds the handle; alpha must be empty and weights ``imagenet`` (the
            model's own trained weights: a SavedModel has no other).
        image_size: Input side in pixels.

    Raises:
        BackboneError: Bad settings, a missing or unusable folder or one outside the allowed
            folders (:func:`tlcore.paths.weights_roots`), or a model that does not
            take ``image_size`` images or returns neither a feature vector nor a feature map.
        WeightsUnavailableError: A URL that cannot be fetched.
    """
    handle = spec.name[len(HUB_PREFIX):].strip()
    _check_hub_spec(spec, handle)
    if not _is_url(handle):
        handle = str(resolve_weights_path(handle))
    layer = HubBackbone(handle)
    inputs = keras.Input((image_size, image_size, 3))
    try:
        features = layer(inputs)
    except (ValueError, TypeError, tf.errors.OpError) as exc:
        raise BackboneError(
            f"The TF Hub model {handle} does not take {image_size}x{image_size} RGB images: "
            f"{str(exc).strip().splitlines()[0]}",
            "Use the image size the model was trained for (often 224).",
        ) from exc
    if len(features.shape) not in (2, 4):
        raise BackboneError(
            f"The TF Hub model {handle} returns a tensor of shape {features.shape}.",
            "Use a model that returns a feature vector (batch, features) or a feature map.",
        )
    trainable = sum(1 for v in layer.hub_variables if v.trainable)
    notes = [
        f"TF Hub model {handle}: {trainable} trainable and "
        f"{len(layer.hub_variables) - trainable} non-trainable variables; "
        "images are scaled to [0, 1]."
    ]
    notes.append(_mode_note(layer))
    return ResolvedBackbone(
        model=keras.Model(inputs, features, name="hub_backbone"),
        preprocess=Preprocess("unit"),
        info=None,
        notes=notes,
        weights_loaded=HUB_PREFIX + handle,
    )


def _mode_note(layer: HubBackbone) -> str:
    """What fine-tuning does to the SavedModel's BatchNorm, plainly."""
    written = writes_in_inference(layer)
    if written:
        return (f"This Hub model cannot keep its BatchNorm statistics frozen: even in inference "
                f"mode its call updates {written} of its variables, so fine-tuning changes them.")
    mode = ("It is called in inference mode" if layer.takes_training
            else "Its call takes no training argument, so it always runs in inference mode")
    return (f"{mode}, also while fine-tuning: its BatchNorm statistics stay as trained (and any "
            "dropout inside it is off); its weights still train.")


_WRITE_OPS = frozenset({"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
                        "Assign", "AssignAdd", "AssignSub"})


def writes_in_inference(layer: HubBackbone) -> int:
    """How many variable writes the SavedModel's inference-mode call makes (0 for a well-made one).

    Reads the graphs of the traced functions :class:`HubBackbone` calls (``training=False``,
    or every trace when the call takes no ``training``) and the functions they call, for ops
    that assign to variables: a BatchNorm that updates its moving statistics shows up as two.
    """
    count = 0
    for concrete in layer._call_fn.concrete_functions:
        # A trace for training=True is never called; one with a tensor for training holds both
        # modes behind a condition, and counts.
        if not layer.takes_training or _traced_training(layer, concrete) is not True:
            count += _assignments(concrete.graph.as_graph_def())
    return count


def _traced_training(layer: HubBackbone, concrete: Any) -> Any:
    args, kwargs = concrete.structured_input_signature
    bound = inspect.signature(layer._call_fn).bind_partial(*args, **kwargs)
    return bound.arguments.get("training")


def _assignments(graph_def: Any) -> int:
    """Variable-writing ops in a graph and in every library function it reaches."""
    library = {function.signature.name: function for function in graph_def.library.function}
    pending, seen, count = [list(graph_def.node)], set(), 0
    while pending:
        for node in pending.pop():
            count += int(node.op in _WRITE_OPS)
            for name in _called_functions(node, library):
                if name not in seen:
                    seen.add(name)
                    pending.append(list(library[name].node_def))
    return count


def _called_functions(node: Any, library: dict[str, Any]) -> list[str]:
    """Library functions a node calls: by op name, or through function attributes (If, While...)."""
    names = [node.op] if node.op in library else []
    for value in node.attr.values():
        names += [value.func.name] if value.HasField("func") else []
        names += [function.name for function in value.list.func]
    return [name for name in names if name in library]


def _check_hub_spec(spec: BackboneSpec, handle: str) -> None:
    if not handle:
        raise BackboneError(
            "A hub: backbone needs a URL or a folder.", "Write hub:URL or hub:/path/to/folder."
        )
    if spec.alpha is not None:
        raise BackboneError(
            f"TF Hub models have no width multiplier, but alpha={spec.alpha} was given.",
            "Leave alpha empty; choose the width through the model's handle.",
        )
    if spec.weights != "imagenet":
        raise BackboneError(
            f"A TF Hub model comes with its own trained weights; weights={spec.weights!r} "
            "cannot apply to it.",
            "Use weights 'imagenet' (the model's own); to train from random weights choose a "
            "catalogue backbone.",
        )


def _is_url(handle: str) -> bool:
    return "://" in handle


def _load(handle: str) -> Any:
    """``hub.load`` with its many failure types turned into errors that say what to do."""
    if _is_url(handle):
        check_hub_url(handle)  # again here: a saved .keras file names its handle too
        with _cache_in_home() as cache:
            try:
                return hub.load(handle)
            except Exception as exc:  # URLError, OSError, tf errors, ...: all mean "not fetched".
                raise WeightsUnavailableError(
                    f"Could not load the TF Hub model {handle} ({brief_reason(exc)}).",
                    "Offline, download and unpack it elsewhere and pass its SavedModel folder as "
                    f"hub:/path/to/folder; models already in the TF Hub cache ({cache}, "
                    f"{CACHE_VARIABLE} to change it) load without network.",
                ) from exc
    path = resolve_weights_path(handle)  # again here: a saved .keras file names its folder too
    if not (path / "saved_model.pb").is_file():
        raise BackboneError(
            f"{path} is not a SavedModel folder (it has no saved_model.pb).",
            "Pass hub:URL, or hub:FOLDER where FOLDER holds saved_model.pb and variables/.",
        )
    try:
        return hub.load(str(path))
    except Exception as exc:  # a corrupt or foreign SavedModel fails in many ways
        raise BackboneError(
            f"Could not load the SavedModel in {path} ({brief_reason(exc)}).",
            "Check that the folder holds a complete TF2 SavedModel.",
        ) from exc


@contextmanager
def _cache_in_home() -> Iterator[str]:
    """Point TF Hub's download cache at ``TL_HOME`` while a URL loads, unless ``TFHUB_CACHE_DIR`` is set.

    TF Hub's own default is the shared temporary folder (``/tmp/tfhub_modules/<sha1 of the
    URL>``), where any user of the machine can create the folder of a URL before the studio
    downloads it and have their SavedModel trained with instead. The lock keeps two threads
    from restoring the variable under each other.
    """
    with _CACHE_LOCK:
        chosen = os.environ.get(CACHE_VARIABLE)
        if chosen:
            yield chosen
            return
        os.environ[CACHE_VARIABLE] = folder = str(subdir(HUB_CACHE_DIR))
        try:
            yield folder
        finally:
            os.environ.pop(CACHE_VARIABLE, None)


def _variables_read_by(function: Any) -> list[tf.Variable]:
    """The variables captured by every traced version (training on/off) of a restored call."""
    found: dict[int, tf.Variable] = {}
    for concrete in function.concrete_functions:
        for variable in concrete.variables:
            found.setdefault(id(variable), variable)
    return list(found.values())


def _variable_name(variable: tf.Variable) -> str:
    # Keras variable names cannot hold "/"; ":0" is TensorFlow's output suffix.
    return variable.name.split(":")[0].replace("/", "_")
