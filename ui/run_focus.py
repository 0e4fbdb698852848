"""What the Train page shows: one experiment at the top and its run below, never two different ones.

The run can be chosen in many places (Launch, the runs table, a ``?run=`` link, the sidebar,
the Home page, the end of the previous run) and the experiment in others (the picker, saving on
Configure). Whichever changed last wins, and the other follows: a run picked elsewhere moves
the picker to its experiment, or to the run's own settings when no saved experiment has them;
an experiment picked or saved moves the run to that experiment's latest attempt (or none yet).
"""

from __future__ import annotations

import contextlib

import streamlit as st

from tlcore.config import RunSpec
from tlcore.errors import RunNotFoundError, TLError
from tlcore.records import RunRecord
from tlcore.report.summaries import run_label
from tlcore.runs.experiments import load_experiment
from tlcore.runs.follow import next_run
from tlcore.runs.store import RunStore
from ui import glue

PICKED = "train.experiment"
"""The picker's key: an experiment name, or ``run:ID`` for a run no saved experiment matches."""
FOLLOW = "train.follow"
"""The toggle: follow the next run of the same launch when the watched one ends."""
_SHOWN = "train.shown_run"
_SEEN = "train.seen_experiment"
_LIVE = "train.live_run"
_FOLLOWED = "train.followed"
RUN_OPTION = "run:"


def _spec_or_none(name: str) -> RunSpec | None:
    try:
        return load_experiment(name)
    except TLError:
        return None  # a damaged experiment is reported when it is picked


def _current_experiment(names: list[str]) -> tuple[str | None, str | None]:
    """The session's current experiment and its settings' key (None when there is none)."""
    name = st.session_state.get(glue.CURRENT_EXPERIMENT)
    spec = _spec_or_none(name) if name in names else None
    return (name, spec.key()) if spec else (None, None)


def option_for_run(run: RunRecord, names: list[str]) -> str:
    """The picker entry of ``run``: its own experiment, another with its settings, else itself."""
    candidates = [run.name] if run.name in names else []
    candidates += [name for name in names if name != run.name]
    for name in candidates:
        spec = _spec_or_none(name)
        if spec is not None and spec.key() == run.spec.key():  # the run's key also holds its data
            return name
    return RUN_OPTION + run.id


def options(names: list[str]) -> list[str]:
    """The saved experiments, plus the watched run's own entry when the picker holds it."""
    picked = st.session_state.get(PICKED)
    return names + [picked] if isinstance(picked, str) and picked.startswith(RUN_OPTION) else names


def label(option: str, store: RunStore) -> str:
    if not option.startswith(RUN_OPTION):
        return option
    run_id = option.removeprefix(RUN_OPTION)
    try:
        return f"the settings of run {run_label(store.get(run_id))}"
    except TLError:
        return f"the settings of run {run_id}"


def _watch_latest(spec: RunSpec | None, store: RunStore) -> None:
    latest = store.latest_with_key(spec.key()) if spec else None
    glue.watch(latest.id if latest else None)


def picked(store: RunStore) -> None:
    """The picker's callback: the run below becomes the picked experiment's latest attempt."""
    option = st.session_state[PICKED]
    if option.startswith(RUN_OPTION):
        glue.watch(option.removeprefix(RUN_OPTION))
    else:
        st.session_state[glue.CURRENT_EXPERIMENT] = option
        _watch_latest(_spec_or_none(option), store)
    st.session_state[_SHOWN] = glue.watched_run()


def agree(names: list[str], store: RunStore) -> None:
    """Before the picker is drawn: make the picker and the watched run agree (see the module)."""
    watched = glue.watched_run()
    current = _current_experiment(names)
    if watched and watched != st.session_state.get(_SHOWN):
        with contextlib.suppress(RunNotFoundError):  # the page says the run no longer exists
            st.session_state[PICKED] = option_for_run(store.get(watched), names)
    elif current[0] and current != st.session_state.get(_SEEN):
        st.session_state[PICKED] = current[0]
        _watch_latest(_spec_or_none(current[0]), store)
    if st.session_state.get(PICKED) not in options(names) and names:
        st.session_state[PICKED] = current[0] or names[0]
        if not watched:
            _watch_latest(_spec_or_none(st.session_state[PICKED]), store)


def remember(names: list[str]) -> None:
    """After the picker: record the pair shown, so the next run notices what changed elsewhere."""
    option = st.session_state.get(PICKED)
    if option in names:
        st.session_state[glue.CURRENT_EXPERIMENT] = option
    st.session_state[_SHOWN] = glue.watched_run()
    st.session_state[_SEEN] = _current_experiment(names)


def seen_active(run: RunRecord) -> None:
    """Called while drawing a queued or running run: when it ends, the page may follow the next."""
    st.session_state[_LIVE] = run.id


def follow_next(store: RunStore) -> None:
    """When the watched run was seen active and has ended, watch the next run of its launch.

    Unless the Follow toggle is off. Called before :func:`agree`, so the picker follows too.
    """
    watched = glue.watched_run()
    if not watched or st.session_state.get(_LIVE) != watched:
        st.session_state.pop(_LIVE, None)  # another run is watched now: its end is not followed
        return
    try:
        ended = store.get(watched)
    except RunNotFoundError:
        return
    if ended.is_active:
        return
    del st.session_state[_LIVE]
    successor = next_run(ended, store.list_runs()) if st.session_state.get(FOLLOW, True) else None
    if successor is not None:
        glue.watch(successor.id)
        st.session_state[_FOLLOWED] = (ended.id, ended.status, successor.id)


def followed_notice(run: RunRecord) -> None:
    """Say that the page moved on by itself, and from which run."""
    followed = st.session_state.get(_FOLLOWED)
    if followed and followed[2] == run.id and run.is_active:
        st.info(f"Run {followed[0]} {followed[1]}; now following the next run of the same launch.",
                icon=":material/skip_next:")
