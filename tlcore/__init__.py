"""tlcore: the transfer-learning engine behind the studio. It knows nothing of Streamlit.

``import tlcore`` gives the Python API (see ``docs/api.md``): the specs ``RunSpec``,
``DatasetSpec``, ``BackboneSpec`` and ``TrainSpec``, and ``train``, ``submit``, ``follow``, ``run``,
``load``, ``compare`` and ``export`` from :mod:`tlcore.api`. They load on first use, so importing
a part of the engine (``tlcore.config``) does not load TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SPECS = ("RunSpec", "DatasetSpec", "BackboneSpec", "TrainSpec")
_CALLS = ("train", "submit", "follow", "run", "load", "compare", "export")
__all__ = [*_SPECS, *_CALLS]


def __getattr__(name: str) -> Any:
    if name in _SPECS:
        return getattr(importlib.import_module("tlcore.config"), name)
    if name in _CALLS:
        return getattr(importlib.import_module("tlcore.api"), name)
    raise AttributeError(f"module 'tlcore' has no attribute {name!r}")
