"""Records that several rooms share: a run as stored, its status, summary and files, one epoch.

They sit below the store, the training loop, the reports and the pages alike, so none of those
has to import another to speak about a run.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from tlcore.config import RunSpec


class RunStatus(StrEnum):
    """Where a run stands. A ``StrEnum``, so the store keeps the plain string and JSON too."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"


ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
TERMINAL = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED})

EPOCH_FIELDS = (
    "epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy",
    "learning_rate", "seconds", "images_per_second",
)


@dataclass
class EpochRecord:
    """One finished epoch, as the training callback reports it."""

    epoch: int
    stage: str
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    seconds: float
    images_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_OLD_TOP_K_KEY = re.compile(r"test_top(\d+)_accuracy")
"""Summaries written before ``top_k`` was a field named the top-k accuracy ``test_top3_accuracy``."""


@dataclass(frozen=True)
class RunSummary:
    """A finished run's headline test metrics and costs, as the tables and metric cards show them.

    Every field but ``test_accuracy`` may be missing from summaries stored by older versions,
    so those default to None (or empty counts) instead of failing the whole run list.
    """

    test_accuracy: float
    macro_f1: float | None = None
    top_k: int | None = None
    test_top_k_accuracy: float | None = None
    best_val_accuracy: float | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    train_seconds: float | None = None
    epochs: int | None = None
    num_classes: int | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Split name -> class name -> number of images."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """Read a stored summary; unknown keys are ignored, missing optional ones left empty."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if values.get("top_k") is None:
            for key, value in data.items():
                match = _OLD_TOP_K_KEY.fullmatch(key)
                if match:
                    values.update(top_k=int(match.group(1)), test_top_k_accuracy=value)
        return cls(**values)


@dataclass(frozen=True)
class RunArtifacts:
    """The files of one run's folder, named in this one place.

    The runner writes them, the pages, the CLI, serving and exports read them, and deleting
    the run deletes the folder.
    """

    folder: Path

    REPORT: ClassVar[str] = "report.json"
    CLASS_NAMES: ClassVar[str] = "class_names.json"
    PREDICTIONS: ClassVar[str] = "predictions.json"
    TRACKING: ClassVar[str] = "tracking.json"
    """JSON artifacts, by the name :meth:`RunStore.read_json` and ``write_json`` take;
    predictions.json holds every test image's answer
    (:class:`tlcore.report.paired.TestPredictions`), for pairing runs."""

    @property
    def run_id(self) -> str:
        return self.folder.name

    @property
    def model(self) -> Path:
        return self.folder / "model.keras"

    @property
    def report(self) -> Path:
        return self.folder / self.REPORT

    @property
    def class_names(self) -> Path:
        return self.folder / self.CLASS_NAMES

    @property
    def tracking(self) -> Path:
        """Where the run's own tracking store is kept (``{"mlflow_uri": ...}``), written when the
        run is created, before any worker can see the run: whichever process ends up training
        it, the run is tracked as asked."""
        return self.folder / self.TRACKING

    @property
    def mistakes(self) -> Path:
        """Thumbnails of the worst test mistakes (TFDS and builtin images have no file to show)."""
        return self.folder / "mistakes"

    def mistake_thumbnail(self, rank: int) -> Path:
        return self.mistakes / f"{rank:02d}.png"

    def mistake_heatmap(self, rank: int) -> Path:
        """The heatmap of the predicted class over the ``rank``-th mistake's thumbnail. Runs
        trained before heatmaps were saved, or whose model could not be explained, have none."""
        return self.mistakes / f"{rank:02d}-heatmap.png"

    @property
    def mistake_heatmap_kind(self) -> Path:
        """One word saying how the heatmaps were made (``grad-cam`` or ``saliency``), so the
        gallery can label saliency, which a TF Hub vector model gets, as what it is."""
        return self.mistakes / "heatmap-kind.txt"

    @property
    def results(self) -> tuple[Path, ...]:
        """What a finished run's results are: written together and removed together."""
        return (self.model, self.report, self.class_names, self.mistakes)

    @property
    def checkpoint(self) -> Path:
        """Folder of the last finished epoch's checkpoint, which a resumed run continues from."""
        return self.folder / "checkpoint"

    @property
    def worker_log(self) -> Path:
        return self.folder / "worker.log"

    @property
    def disk_full_marker(self) -> Path:
        """Empty file a worker leaves when a full disk kept the store from recording its end."""
        return self.folder / "disk-full"

    @property
    def ray_job(self) -> Path:
        """Which Ray job trains the run (``tlcore.runs.ray_jobs``); absent for local workers."""
        return self.folder / "ray-job.json"

    @property
    def exports(self) -> Path:
        return self.folder / "exports"

    def export(self, format_name: str) -> Path:
        """The deployable zip of the run's model in ``format_name``."""
        return self.exports / f"{self.run_id}-{format_name}.zip"


@dataclass
class RunRecord:
    """A run as stored; ``summary`` holds the headline test metrics once finished."""

    id: str
    key: str
    name: str
    spec: RunSpec
    status: RunStatus
    owner: str | None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    worker_pid: int | None = None
    worker_started: float | None = None
    stop_requested: bool = False
    progress: float = 0.0
    notes: list[str] = field(default_factory=list)
    summary: RunSummary | None = None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def data_fingerprint(self) -> str:
        """The fingerprint of the data the run was launched on ("" for runs from before)."""
        return self.key.partition("-")[2]

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at
