"""What every benchmark shares: arguments, an offline Keras cache, RSS sampling, tables.

The scripts print figures and never assert them: timings on a shared 2-core machine vary with
whatever else runs, so each script measures the things it compares in one process, one after
the other, and prints their ratio together with the machine's load.

Keras reads ``$KERAS_HOME`` once, when it is imported. So a script calls :func:`prepare`
(which sets the environment and copies the offline weights) before anything imports Keras or
``tlcore``; the scripts therefore import those inside their functions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ASSETS = REPO.parent / "shared" / "assets"
FLOWERS = "datasets/flower_photos"
WEIGHTS = "keras-weights"
BACKBONE = "mobilenet_v2"
ALPHA = 0.35
WEIGHT_FILE_224 = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"

if str(REPO) not in sys.path:  # the scripts run as files, so the repo root is not on the path
    sys.path.insert(0, str(REPO))


# ---- arguments and environment -------------------------------------------------------------


def parser(
    description: str, epochs: int = 10, quick_epochs: int = 2, subset: float = 1.0
) -> argparse.ArgumentParser:
    """The options every benchmark takes; a script adds its own to the returned parser."""
    p = argparse.ArgumentParser(description=description)
    p.set_defaults(quick_defaults={})
    quick_option(p, "--epochs", int, epochs, quick_epochs, "training epochs")
    p.add_argument("--image-size", type=int, default=160,
                   help="square input side in pixels (default 160, the studio's default)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    p.add_argument("--seed", type=int, default=42, help="seed of the split, weights and shuffling")
    quick_option(p, "--subset", float, subset, 0.25, "fraction of each flower class to use")
    p.add_argument("--quick", action="store_true",
                   help="fewer epochs and images: a sanity check that runs in about a minute")
    p.add_argument("--assets", type=Path, default=DEFAULT_ASSETS,
                   help=f"the shared offline assets folder (default {DEFAULT_ASSETS})")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary folders")
    return p


def quick_option(
    p: argparse.ArgumentParser, flag: str, kind: type, full: float, quick: float, text: str
) -> None:
    """An option whose default depends on ``--quick``; :func:`parse` fills it in."""
    p.add_argument(flag, type=kind, default=None,
                   help=f"{text} (default {full:g}; {quick:g} with --quick)")
    p.get_default("quick_defaults")[flag.lstrip("-").replace("-", "_")] = (full, quick)


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse, then fill the defaults that depend on ``--quick``."""
    args = p.parse_args(argv)
    for dest, (full, quick) in args.quick_defaults.items():
        if getattr(args, dest) is None:
            setattr(args, dest, quick if args.quick else full)
    return args


def main(
    p: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace, BenchEnv], None],
    argv: Sequence[str] | None = None,
) -> None:
    """Parse the options, set up the temporary homes, run the benchmark, clean up."""
    args = parse(p, argv)
    with bench_env(args) as env:
        run(args, env)


@dataclass
class BenchEnv:
    """Temporary homes of one benchmark process."""

    root: Path
    keras_home: Path
    tl_home: Path
    assets: Path

    @property
    def flowers(self) -> Path:
        return self.assets / FLOWERS

    @property
    def weights_224(self) -> Path:
        return self.keras_home / "models" / WEIGHT_FILE_224

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def prepare(args: argparse.Namespace) -> BenchEnv:
    """Check the assets, then point KERAS_HOME, TL_HOME and TL_DATA_ROOT at temp folders.

    Exits with status 0 and a message when the assets are absent: a benchmark that cannot run
    here is skipped, not failed.
    """
    assets = args.assets.expanduser().resolve()
    weights = assets / WEIGHTS
    if not (weights / WEIGHT_FILE_224).is_file() or not (assets / FLOWERS).is_dir():
        print(f"SKIPPED: the offline assets are not at {assets} (need {WEIGHTS}/{WEIGHT_FILE_224} "
              f"and {FLOWERS}/). Pass --assets PATH to point at them.")
        raise SystemExit(0)
    if "keras" in sys.modules:
        raise RuntimeError("prepare() must run before keras is imported (KERAS_HOME is read once)")
    root = Path(tempfile.mkdtemp(prefix="tlbench-"))
    env = BenchEnv(root, root / "keras", root / "tlhome", assets)
    models = env.keras_home / "models"
    models.mkdir(parents=True)
    for item in weights.iterdir():
        if item.is_file():
            shutil.copy2(item, models / item.name)
    env.tl_home.mkdir()
    os.environ["KERAS_HOME"] = str(env.keras_home)
    os.environ["TL_HOME"] = str(env.tl_home)
    os.environ["TL_DATA_ROOT"] = str(assets)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


@contextlib.contextmanager
def bench_env(args: argparse.Namespace) -> Iterator[BenchEnv]:
    """:func:`prepare`, and remove the temp folders afterwards unless ``--keep-temp``."""
    env = prepare(args)
    try:
        yield env
    finally:
        if args.keep_temp:
            print(f"\n(temporary folders kept in {env.root})")
        else:
            env.cleanup()


# ---- what the machine is doing -------------------------------------------------------------


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def print_header(title: str, args: argparse.Namespace, extra: dict[str, object] | None = None) -> None:
    """Title, machine, versions, load and settings, so a pasted table carries its context."""
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notices from the diagnostics, not results
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    print(f"== {title} ==")
    print(f"date            {dt.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine         {platform.machine()}, {psutil.cpu_count()} logical CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, python {platform.python_version()}")
    print(f"versions        tensorflow {tf.__version__}, keras {keras.__version__}")
    print(f"load (1/5/15 m) {load_text()}  (other processes share these cores)")
    print(f"settings        epochs {args.epochs}, image size {args.image_size}, batch "
          f"{args.batch_size}, seed {args.seed}, subset {args.subset:g}"
          + (" (--quick)" if args.quick else ""))
    for key, value in (extra or {}).items():
        print(f"{key:<15} {value}")
    print()


# ---- phases: wall time and peak RSS --------------------------------------------------------


@dataclass
class Phase:
    """One timed part of a benchmark: wall and CPU seconds (all threads of this process, so
    less sensitive than wall time to other processes taking the cores), RSS in bytes, and the
    minor page faults (memory the system had to map in, see ``tlcore.training.allocator``)."""

    name: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    rss_start: int = 0
    rss_peak: int = 0
    load_end: float = 0.0
    page_faults: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def peak_mb(self) -> float:
        return self.rss_peak / 2**20

    @property
    def growth_mb(self) -> float:
        return (self.rss_peak - self.rss_start) / 2**20


class RssSampler:
    """Samples this process's RSS in a background thread; :meth:`phase` reports the peak.

    Python rarely gives memory back to the system, so the RSS at a phase's start includes
    what earlier phases left behind; a phase reports both its peak and its peak minus start.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self._process = psutil.Process()
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.phases: list[Phase] = []

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _rss(self) -> int:
        return self._process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._rss()
            with self._lock:
                self._peak = max(self._peak, rss)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        """Time the block and record the highest RSS seen while it ran."""
        gc.collect()
        record = Phase(name)
        record.rss_start = self._rss()
        with self._lock:
            self._peak = record.rss_start
        started, cpu_started = time.perf_counter(), time.process_time()
        faults_started = _page_faults()
        try:
            yield record
        finally:
            record.seconds = time.perf_counter() - started
            record.cpu_seconds = time.process_time() - cpu_started
            record.page_faults = _page_faults() - faults_started
            with self._lock:
                record.rss_peak = max(self._peak, self._rss())
            record.load_end = os.getloadavg()[0]
            self.phases.append(record)


def _page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def reset_keras(seed: int) -> None:
    """A clean slate between phases: no leftover graphs, same seeds."""
    import keras

    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(seed)


def epoch_clock():  # -> keras.callbacks.Callback
    """A Keras callback whose ``seconds`` list holds the wall time of each epoch."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return EpochClock()


def warm_up(image_size: int) -> float:
    """Pay TensorFlow's one-time start-up (thread pools, oneDNN kernels) before any timed phase,
    so the phase that happens to run first is not charged for it. Returns the seconds spent."""
    import keras
    import numpy as np

    started = time.perf_counter()
    model = keras.applications.MobileNetV2(
        alpha=ALPHA, include_top=False, weights=None, input_shape=(image_size, image_size, 3)
    )
    batch = np.zeros((8, image_size, image_size, 3), np.float32)
    model.predict(batch, verbose=0)
    model(batch, training=False)
    del model
    keras.backend.clear_session()
    return time.perf_counter() - started


# ---- the flowers split ---------------------------------------------------------------------


@dataclass
class FileSplit:
    """The studio's split written out as file paths, for the plain Keras recipe."""

    class_names: list[str]
    paths: dict[str, list[str]]
    labels: dict[str, list[int]]

    def counts(self) -> str:
        return ", ".join(f"{name} {len(self.paths[name])}" for name in ("train", "val", "test"))


def dataset_spec(env: BenchEnv, args: argparse.Namespace):  # -> tlcore.config.DatasetSpec
    from tlcore.config import DatasetSpec

    return DatasetSpec(f"folder:{env.flowers}", subset=args.subset,
                       image_size=args.image_size, seed=args.seed)


def studio_split(env: BenchEnv, args: argparse.Namespace) -> FileSplit:
    """Load the studio's DatasetBundle once and write its split's file ids to ``split.json``.

    This runs before the timed phases; it also leaves every JPEG in the OS page cache, so no
    phase is charged for the first read from disk.
    """
    from tlcore.data import load_dataset

    bundle = load_dataset(dataset_spec(env, args))
    split = FileSplit(
        class_names=list(bundle.class_names),
        paths={name: [str(env.flowers / i) for i in s.ids] for name, s in bundle.splits().items()},
        labels={name: s.labels.astype(int).tolist() for name, s in bundle.splits().items()},
    )
    (env.root / "split.json").write_text(json.dumps(split.__dict__, indent=1))
    del bundle
    gc.collect()
    return split


# ---- printing ------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table with aligned columns (readable in a terminal, pastes into docs)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def phase_rows(phases: Sequence[Phase]) -> list[list[object]]:
    """Wall and CPU time, page faults, RSS and load of each phase."""
    return [
        [p.name, f"{p.seconds:.1f}", f"{p.cpu_seconds:.1f}", f"{p.page_faults:,}",
         f"{p.peak_mb:.0f}", f"{p.growth_mb:+.0f}", f"{p.load_end:.2f}"]
        for p in phases
    ]


PHASE_HEADERS = ("phase", "wall s", "CPU s", "page faults", "peak RSS MB", "peak - start MB",
                 "load 1m at end")


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


# ---- the studio side -----------------------------------------------------------------------


def studio_spec(env: BenchEnv, args: argparse.Namespace, **train_fields: object):  # -> RunSpec
    """The studio run matching the benchmark's settings; ``train_fields`` override TrainSpec."""
    from tlcore.config import BackboneSpec, RunSpec, TrainSpec

    train = TrainSpec(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                      **train_fields)  # type: ignore[arg-type]
    return RunSpec(dataset=dataset_spec(env, args),
                   backbone=BackboneSpec(BACKBONE, alpha=ALPHA, weights="imagenet"), train=train)


@dataclass
class StudioResult:
    """What one ``tlcore.training.loop.train`` + ``tlcore.report.evaluate.evaluate`` produced."""

    accuracy: float
    train_seconds: float
    evaluate_seconds: float
    epoch_seconds: list[float]
    feature_seconds: float | None
    beside_training_seconds: float | None
    """The part of ``feature_seconds`` that ran while the head trained (the test split)."""
    notes: list[str]
    trainable_params: int
    train_images: int
    val_images: int
    test_images: int


_FEATURE_NOTE = re.compile(
    r"Frozen part up to .* feature store, ([0-9.]+) s(?:, ([0-9.]+) s of it while the head trained)?\.$"
)


def run_studio(spec) -> StudioResult:  # spec: tlcore.config.RunSpec
    """Train and evaluate on the test split exactly as the worker does (data loading included)."""
    from tlcore.training.loop import train

    started = time.perf_counter()
    result = train(spec)
    trained = time.perf_counter()
    report = result.test_report()
    feature_seconds = beside_seconds = None
    for note in result.notes:
        match = _FEATURE_NOTE.search(note)
        if match:
            feature_seconds = (feature_seconds or 0.0) + float(match.group(1))
            beside_seconds = (beside_seconds or 0.0) + float(match.group(2) or 0.0)
    return StudioResult(
        accuracy=report.accuracy,
        train_seconds=trained - started,
        evaluate_seconds=time.perf_counter() - trained,
        epoch_seconds=[e.seconds for e in result.history],
        feature_seconds=feature_seconds,
        beside_training_seconds=beside_seconds,
        notes=result.notes,
        trainable_params=result.trainable_params,
        train_images=len(result.bundle.train),
        val_images=len(result.bundle.val),
        test_images=len(result.bundle.test),
    )
