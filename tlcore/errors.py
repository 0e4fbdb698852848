"""Errors a user can cause, each with a hint that says what to do next.

The UI and the CLI show ``str(error)`` (message plus hint) instead of a traceback, so every
error raised for bad input, missing files or impossible settings must be one of these.
"""

from __future__ import annotations


class TLError(Exception):
    """Base class of every user-facing error.

    Args:
        message: What went wrong, in the user's terms.
        hint: What to do about it. Shown after the message.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class ConfigError(TLError):
    """A setting is impossible (image size 0, negative epochs, unknown strategy, ...)."""


class DatasetError(TLError):
    """A dataset source cannot be used (unknown name, missing folder, no images, ...)."""


class BadImageError(TLError):
    """An image cannot be decoded or is unsafe to decode (corrupt, not an image, bomb)."""


class UploadError(TLError):
    """An upload or archive is refused (too large, path escape, too many files, ...)."""


class BackboneError(TLError):
    """A backbone is unknown or cannot be built with the requested settings."""


class WeightsUnavailableError(BackboneError):
    """Pretrained weights are neither on disk nor downloadable."""


class RunNotFoundError(TLError):
    """No run with the given id exists in the store."""


class RunStateError(TLError):
    """The run is in a state that does not allow the request (no model yet, still running)."""


class PermissionDeniedError(TLError):
    """The current user may not change this run."""


class ArtifactError(TLError):
    """A run's saved files are damaged or unsafe to load (e.g. a model with a Lambda layer)."""


class StorageError(TLError):
    """The server could not write a run's files (disk full, quota exceeded)."""


class ClusterError(TLError):
    """The Ray cluster named by ``TL_JOBS`` cannot be reached, or refused a run."""


class ExportError(TLError):
    """A model cannot be converted to the requested deployment format."""


REASON_LIMIT = 200
"""Characters of a library's error text that a message quotes."""


def brief_reason(exc: BaseException, limit: int = REASON_LIMIT) -> str:
    """The first line of a library's error, cut at a word: converters, loaders and clusters put
    whole logs into their exceptions, and a message a person reads quotes one sentence of them."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:") + "…"
