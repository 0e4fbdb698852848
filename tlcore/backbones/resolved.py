"""What building a backbone gives the model builder, whatever its source."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from tlcore.backbones.catalogue import BackboneInfo


@dataclass
class ResolvedBackbone:
    """A built backbone with everything a run needs to use and report it.

    Attributes:
        model: Takes ``(S, S, 3)`` float images already preprocessed; returns a 4-D feature
            map (Keras applications) or a 2-D feature vector (most TF Hub models).
        preprocess: The layer to put in front of ``model``; takes RGB pixels in [0, 255].
        info: The catalogue entry, or ``None`` for a TF Hub model.
        notes: Lines for the run log (a weights fallback used, what the model expects, ...).
        weights_loaded: What initialised the weights: ``"random"``, the path of the weights
            file read, or ``"hub:HANDLE"``.
    """

    model: keras.Model
    preprocess: keras.layers.Layer
    info: BackboneInfo | None
    notes: list[str] = field(default_factory=list)
    weights_loaded: str = "random"
