"""The one place where the app meets Streamlit's machinery: session keys, caches, errors.

Pages import this module instead of calling ``st.cache_*`` or inventing session keys, so what
is cached, for how long and for whom is visible in one file. Nothing here trains or decodes:
that is ``tlcore``'s job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import plotly.graph_objects as go
import streamlit as st
from PIL import Image
from streamlit.navigation.page import StreamlitPage
from streamlit.runtime.scriptrunner import script_runner

from tlcore.backbones import backbone_block_table, describe_catalogue
from tlcore.backbones.blocks import BlockInfo
from tlcore.config import BackboneSpec, DatasetSpec, RunSpec
from tlcore.data.preview import DatasetPreview, preview_dataset
from tlcore.deploy.serving import LoadedRun, load_run
from tlcore.errors import ConfigError, TLError
from tlcore.images import load_image
from tlcore.paths import keras_models_dir, tl_home
from tlcore.records import RunArtifacts, RunRecord
from tlcore.report.evaluate import EvalReport
from tlcore.report.explain import Explanation, explain, overlay
from tlcore.report.paired import PairedComparison
from tlcore.report.plots import comparison_figure, confusion_figure, per_class_f1_figure
from tlcore.runs.experiments import Starter, list_experiments, load_experiment, starter_spec
from tlcore.runs.pairing import pair_runs
from tlcore.runs.store import RunStore
from tlcore.training.estimate import ServerProfile, measure_server

log = logging.getLogger("tlstudio.ui")
T = TypeVar("T")

# Session keys shared between pages (page-local widget keys are "<page>.<name>").
CURRENT_EXPERIMENT = "current_experiment"
"""Name of the experiment the Train page picks up (set when Configure saves one)."""
WATCHED_RUN = "watched_run"
"""Id of the run the Train page shows; mirrored in the URL as ?run=ID."""
RUN_PARAM = "run"
COMPARE_PARAM = "runs"
"""``?runs=ID,ID`` on the Compare page: the runs to show first (e.g. from the Home page)."""

SESSION_DEFAULTS: dict[str, object] = {CURRENT_EXPERIMENT: None, WATCHED_RUN: None}
POLL_ACTIVE_S = 1.5
"""How often live views re-read the store while a run is queued or running."""


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def literal(text: str) -> str:
    """A user's text (a run or experiment name) shown as typed in Markdown.

    Names are shared: one person's ``[Session expired](https://evil.example)`` must not become
    a link, an image or a formula in every user's sidebar.
    """
    return _MARKDOWN.sub(r"\\\1", text)


def init_session() -> None:
    """Give every shared session key its default once per browser session."""
    for key, value in SESSION_DEFAULTS.items():
        st.session_state.setdefault(key, value)


# ---- friendly errors -------------------------------------------------------------------


def show_error(exc: BaseException, doing: str = "") -> None:
    """Render an error the way every page does: the message, then what to do about it."""
    if isinstance(exc, TLError):
        st.error(exc.message, icon=":material/error:")
        if exc.hint:
            st.info(exc.hint, icon=":material/lightbulb:")
        return
    log.exception("unexpected error while %s", doing or "rendering a page", exc_info=exc)
    st.error(
        "Something went wrong on our side" + (f" while {doing}" if doing else "")
        + ". The details are in the server log; please try again or report it.",
        icon=":material/error:",
    )


def describe_error(exc: BaseException, doing: str = "") -> str:
    """One line for an error shown later (e.g. from a callback); unexpected ones are logged."""
    if isinstance(exc, TLError):
        return str(exc)
    log.exception("unexpected error while %s", doing or "handling a request", exc_info=exc)
    return "Something went wrong on our side; the details are in the server log."


@contextmanager
def friendly(doing: str = "") -> Iterator[None]:
    """Run a block; show any error as a friendly message and carry on after the block."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the page must never show a traceback
        show_error(exc, doing)


def attempt(fn: Callable[..., T], *args: object, doing: str = "", **kwargs: object) -> T | None:
    """``fn(*args, **kwargs)``, or ``None`` after showing a friendly error."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - see friendly()
        show_error(exc, doing)
        return None


_frame = threading.local()
DEEP_LINK = "_deep_link"
"""Session key of a page (and its query parameters) asked for before the frame ran."""


def run_page(page: StreamlitPage) -> None:
    """Run the selected page with a last-resort guard (reruns and page switches pass through)."""
    _frame.active = True
    try:
        with friendly("showing this page"):
            page.run()
    finally:
        _frame.active = False


def require_frame(page_file: str) -> None:
    """First call of every page: a page run without ``app.py`` (see its docstring) goes there.

    The page and its query parameters are remembered, so the visitor still lands where the
    link pointed, but only after the frame (auth gate, sidebar, session defaults) has run.
    """
    if getattr(_frame, "active", False):
        return
    st.session_state[DEEP_LINK] = (Path(page_file).stem, st.query_params.to_dict())
    st.switch_page("app.py")


def restore_deep_link(pages: list[StreamlitPage]) -> None:
    """Open the page that a frameless visit asked for (see :func:`require_frame`)."""
    wanted = st.session_state.pop(DEEP_LINK, None)
    if wanted is None:
        return
    stem, params = wanted
    for candidate in pages:
        if candidate.url_path == stem:
            st.switch_page(candidate, query_params=params)


# ---- shared state ----------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _store_at(root: str) -> RunStore:
    return RunStore(root=Path(root))


def store() -> RunStore:
    """The run store under the current ``TL_HOME`` (one per home, shared by sessions)."""
    return _store_at(str(tl_home()))


def store_opens() -> bool:
    """Whether the run store can be used; if not, say why and what to do, as every page would.

    A damaged ``runs.sqlite``, a ``TL_HOME`` that is a file or cannot be created: every page
    and the jobs sidebar need the store, so the frame shows the one message instead of them.
    Not cached when it fails, so the app works again as soon as the store is repaired.
    """
    return attempt(store, doing="opening the run store") is not None


def watched_run() -> str | None:
    """The run the Train page shows: ``?run=`` in the URL wins, else the session's choice."""
    from_url = st.query_params.get(RUN_PARAM)
    if from_url:
        st.session_state[WATCHED_RUN] = from_url
    return st.session_state.get(WATCHED_RUN)


def watch(run_id: str | None, in_url: bool = True) -> None:
    """Make ``run_id`` the watched run, in the session and (on the Train page) in the URL."""
    st.session_state[WATCHED_RUN] = run_id
    if not in_url:
        return
    if run_id:
        st.query_params[RUN_PARAM] = run_id
    else:
        st.query_params.pop(RUN_PARAM, None)


def current_experiment() -> str | None:
    """The experiment the pages work from: the current one, else the most recently saved one.

    ``None`` when there is none, or it cannot be loaded: :func:`current_spec` then gives the
    :func:`starter` settings.
    """
    names = list_experiments()
    name = st.session_state.get(CURRENT_EXPERIMENT) or (names[0] if names else None)
    if name not in names:
        return None
    try:
        load_experiment(name)
    except TLError:
        log.warning("experiment %r could not be loaded; using the defaults", name)
        return None
    return name


def current_spec() -> RunSpec:
    """The :func:`current_experiment`'s spec, else the :func:`starter` settings for this server."""
    name = current_experiment()
    return load_experiment(name) if name else starter().spec


@st.cache_data(ttl=60, show_spinner=False)
def _starter(models_dir: str) -> Starter:
    del models_dir  # part of the key only
    return starter_spec()


def starter() -> Starter:
    """What a visitor without an experiment starts from: a backbone whose weights are on disk.

    Re-checked each minute, like the catalogue, so weights copied in later are picked up.
    """
    return _starter(str(keras_models_dir()))


PREVIEWED = "configure.previewed"
"""The dataset spec Configure last previewed in this session."""
ASSUMED_TRAIN_IMAGES = 1000
"""Training images assumed by estimates for a dataset that cannot be listed."""


@st.cache_data(show_spinner=False, max_entries=64, ttl=60)
def _train_images(dataset_json: str, home: str) -> int:
    del home  # part of the key only
    return preview_dataset(DatasetSpec(**json.loads(dataset_json)), per_class=0).train_images


def train_images(dataset: DatasetSpec) -> int | None:
    """Training images of ``dataset``, counted from its file listing (no image decoded; cached
    for a minute), so estimates use the real size whether or not it was previewed; ``None``
    when the dataset cannot be listed."""
    try:
        return _train_images(json.dumps(dataclasses.asdict(dataset), sort_keys=True), str(tl_home()))
    except TLError:
        return None


# ---- caches ----------------------------------------------------------------------------


@st.cache_data(show_spinner="Listing the dataset…", show_time=True, max_entries=16, ttl=60)
def _preview(dataset_json: str, home: str) -> DatasetPreview:
    del home  # part of the key only: zip: and folder: paths mean different data per home
    return preview_dataset(DatasetSpec(**json.loads(dataset_json)))


def dataset_preview(spec: DatasetSpec) -> DatasetPreview:
    """Samples, counts, warnings and skipped files of a dataset, cached per dataset spec for a
    minute (files added, or found unreadable by a run, show up after that).

    It lists the files and decodes only the samples shown, never the dataset.
    """
    return _preview(json.dumps(dataclasses.asdict(spec), sort_keys=True), str(tl_home()))


@st.cache_data(ttl=60, show_spinner=False)
def _catalogue(models_dir: str) -> list[dict]:
    del models_dir  # part of the key only
    return describe_catalogue()


def catalogue_rows() -> list[dict]:
    """The backbone catalogue table; whether weights are on disk is re-checked each minute."""
    return _catalogue(str(keras_models_dir()))


@st.cache_data(ttl=60, show_spinner=False)
def _server_profile(home: str) -> ServerProfile:
    return measure_server(RunStore(root=Path(home)))


def server_profile() -> ServerProfile:
    """This server's cores and its finished runs' speeds, for estimates; re-read each minute."""
    return _server_profile(str(store().root))


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _loaded(home: str, run_id: str, model_mtime: float) -> LoadedRun:
    del model_mtime  # part of the key only: a retrained model is loaded again
    return load_run(run_id, RunStore(root=Path(home)))


def loaded_run(run_id: str) -> LoadedRun:
    """A finished run's model, loaded once per process and model file version.

    ``LoadedRun.predict`` holds a lock, so sessions can share the cached model.
    """
    path = store().model_path(run_id)
    mtime = path.stat().st_mtime if path.exists() else 0.0
    return _loaded(str(store().root), run_id, mtime)


OVERLAY_SIDE = 512
"""Longest side of a cached overlay: enough for a column of the page, small in the cache."""


@st.cache_data(max_entries=128, show_spinner="Computing the heatmap…")
def _explained(home: str, run_id: str, finished_at: float, digest: str, class_name: str | None,
               _image: bytes) -> tuple[bytes, Explanation]:
    del home, finished_at  # part of the key only; the digest stands for the unhashed image
    loaded = loaded_run(run_id)
    if class_name is not None and class_name not in loaded.class_names:
        raise ConfigError(f"Run {run_id} has no class “{class_name}”.",
                          "Pick one of its classes, or “predicted class”.")
    index = None if class_name is None else loaded.class_names.index(class_name)
    with loaded.lock:  # the model is shared by every session (see loaded_run)
        [explanation] = explain(loaded.model, loaded.class_names, [_image], loaded.image_size, index)
    picture = Image.fromarray(overlay(load_image(_image), explanation.heatmap))
    picture.thumbnail((OVERLAY_SIDE, OVERLAY_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue(), explanation


def explained_overlay(run: RunRecord, image: bytes,
                      class_name: str | None = None) -> tuple[bytes, Explanation]:
    """A PNG of the run's heatmap over ``image`` (at most 512 px a side), and the explanation.

    Cached by run, finish time, the image's content hash and class, so a rerun or another
    session with the same upload does not recompute it; the hash keys only identical bytes.
    ``class_name`` None explains the predicted class.

    Raises:
        BadImageError: ``image`` cannot be decoded.
        ConfigError: ``class_name`` is not one of the run's classes.
    """
    digest = hashlib.sha256(image).hexdigest()
    return _explained(str(store().root), run.id, run.finished_at or 0.0, digest, class_name, image)


# ---- finished runs: their report and charts never change -------------------------------
# Keyed on (home, run id, finished_at): a run's epochs and report are final once it finished.
# cache_resource, not cache_data: the objects are shared as they are, not copied per session
# (copying a figure costs about as much as building it). Callers only read them;
# st.plotly_chart copies a figure before sending it.

RunKey = tuple[str, float, str]
"""(run id, finished_at, label) of a finished run as the compare page shows it."""


def _keys(runs: list[RunRecord], labels: dict[str, str]) -> tuple[RunKey, ...]:
    return tuple((run.id, run.finished_at or 0.0, labels[run.id]) for run in runs)


@st.cache_resource(max_entries=256, show_spinner=False)
def _report(home: str, run_id: str, finished_at: float) -> EvalReport:
    del finished_at  # part of the key only
    return EvalReport.from_dict(RunStore(root=Path(home)).read_json(run_id, RunArtifacts.REPORT))


@st.cache_resource(max_entries=64, show_spinner=False)
def _paired(home: str, first: tuple[str, float], second: tuple[str, float]) -> PairedComparison:
    runs = RunStore(root=Path(home))
    return pair_runs(runs, runs.get(first[0]), runs.get(second[0]))


def paired_comparison(first: RunRecord, second: RunRecord) -> PairedComparison:
    """Two finished runs paired image by image, once per process and pair (finish times are in
    the key, so a rerun is paired afresh).

    Raises:
        NotPairedError: They were not tested on the same images, or one kept no answers.
    """
    keys = [(run.id, run.finished_at or 0.0) for run in (first, second)]
    return _paired(str(store().root), *keys)


def finished_report(run: RunRecord) -> EvalReport:
    """A finished run's evaluation report, read from its artifacts once per process."""
    return _report(str(store().root), run.id, run.finished_at or 0.0)


@st.cache_resource(max_entries=64, show_spinner=False)
def _comparison_chart(home: str, runs: tuple[RunKey, ...], metric: str) -> go.Figure:
    histories = {label: RunStore(root=Path(home)).epochs(run_id) for run_id, _, label in runs}
    return comparison_figure(histories, metric).update_xaxes(dtick=1)  # whole epochs only


def comparison_chart(runs: list[RunRecord], labels: dict[str, str], metric: str) -> go.Figure:
    """One line per finished run for ``metric`` (shared: do not modify it)."""
    return _comparison_chart(str(store().root), _keys(runs, labels), metric)


@st.cache_resource(max_entries=128, show_spinner=False)
def _confusion_chart(home: str, run: RunKey) -> go.Figure:
    run_id, finished_at, label = run
    return confusion_figure(_report(home, run_id, finished_at), label)


def confusion_chart(run: RunRecord, label: str) -> go.Figure:
    """A finished run's confusion matrix (shared: do not modify it)."""
    return _confusion_chart(str(store().root), _keys([run], {run.id: label})[0])


@st.cache_resource(max_entries=64, show_spinner=False)
def _per_class_f1_chart(home: str, runs: tuple[RunKey, ...], metric: str = "f1") -> go.Figure:
    return per_class_f1_figure({label: _report(home, run_id, finished_at)
                                for run_id, finished_at, label in runs}, metric)


def per_class_f1_chart(runs: list[RunRecord], labels: dict[str, str], metric: str = "f1") -> go.Figure:
    """Per-class F1 (or ``metric``: precision, recall, or all three, see
    :func:`~tlcore.report.plots.per_class_f1_figure`) of finished runs whose report could be
    read (shared: do not modify it)."""
    return _per_class_f1_chart(str(store().root), _keys(runs, labels), metric)


def backbone_blocks(backbone: BackboneSpec, image_size: int) -> list[BlockInfo]:
    """The blocks a catalogue backbone can unfreeze, with their parameters, bottom to top; none
    for TF Hub models and for a backbone that cannot be built (its problem is shown elsewhere).

    Cached per backbone in tlcore (a random-weight model, built once: no weights file is read
    and nothing trains).
    """
    try:
        return list(backbone_block_table(backbone, image_size))
    except TLError:
        return []


# ---- per-run costs Streamlit adds ----------------------------------------------------------


def _clean_problem_modules_but_keras() -> None:
    """Streamlit's after-run clean-up of stateful modules, without the Keras reset.

    After every script run Streamlit calls ``keras.backend.clear_session()``, for apps that
    build models in the script. This app never does (workers train; the server only loads
    saved models into the shared cache above), and the reset drops TensorFlow's kernel cache,
    so every prediction after any session's rerun cost 0.3 s per model instead of 0.01 s, plus
    another full garbage collection. Matplotlib figures are still closed, as Streamlit does.
    """
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


def keep_keras_state() -> None:
    """Install :func:`_clean_problem_modules_but_keras` in place of Streamlit's clean-up.

    ``_clean_problem_modules`` is private to Streamlit: if a new version renames it, nothing
    is replaced (predictions get slower, nothing breaks) and ``tests/app`` says so.
    """
    if not hasattr(script_runner, "_clean_problem_modules"):
        log.warning("streamlit has no _clean_problem_modules; Keras is reset after every run")
        return
    script_runner._clean_problem_modules = _clean_problem_modules_but_keras


keep_keras_state()
