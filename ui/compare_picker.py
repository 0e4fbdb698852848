"""Which runs the Compare page shows: the ones a link sent (``?runs=ID,ID``), else the newest two.

A link can name runs that are still training (the Home page links the classic runs as soon as
one has results). They join the selection when they finish, without a click; the multiselect
would not do that on its own, because it keeps its value when only its default changes.
"""

from __future__ import annotations

import contextlib

import streamlit as st

from tlcore.errors import TLError
from tlcore.records import RunRecord, RunStatus
from tlcore.report.summaries import run_label
from tlcore.runs.store import RunStore
from ui import glue

KEY = "compare.runs"
_REQUEST = "compare.request"
"""(ids the link sent, those of them that could be compared) when the selection was last set."""
COMPARABLE = frozenset({RunStatus.FINISHED, RunStatus.STOPPED})


def comparable_runs(store: RunStore) -> list[RunRecord]:
    """Runs with test results: finished ones, and stopped ones that saved the epochs they finished."""
    return [run for run in store.list_runs(statuses=COMPARABLE)
            if run.status == RunStatus.FINISHED or run.summary is not None]


def choice_label(run: RunRecord, short: bool = False) -> str:
    """The run's label, marked when it was stopped: its results cover only part of its epochs."""
    return run_label(run, short) + (" (stopped)" if run.status == RunStatus.STOPPED else "")


def sent_ids() -> tuple[str, ...]:
    return tuple(run_id for run_id in st.query_params.get(glue.COMPARE_PARAM, "").split(",") if run_id)


def pick_runs(runs: list[RunRecord]) -> list[RunRecord]:
    """The multiselect of runs, preselecting every sent run that can be compared."""
    by_id = {run.id: run for run in runs}
    sent = sent_ids()
    available = tuple(run_id for run_id in sent if run_id in by_id)
    before_sent, before_available = st.session_state.get(_REQUEST, ((), ()))
    if KEY not in st.session_state or (sent and sent != before_sent):
        st.session_state[KEY] = list(available) if sent else list(by_id)[:2]
    else:  # keep the person's choice; add sent runs that finished since, drop deleted ones
        kept = [run_id for run_id in st.session_state[KEY] if run_id in by_id]
        st.session_state[KEY] = kept + [run_id for run_id in available
                                        if run_id not in before_available and run_id not in kept]
    st.session_state[_REQUEST] = (sent, available)
    chosen = st.multiselect("Runs with results (pick two or more to compare)", list(by_id),
                            format_func=lambda run_id: choice_label(by_id[run_id]), key=KEY)
    return [by_id[run_id] for run_id in chosen]


def not_comparable_yet(store: RunStore, runs: list[RunRecord]) -> list[RunRecord]:
    """Runs a link sent that have no results (yet): still training, failed, or stopped early."""
    shown = {run.id for run in runs}
    pending = []
    for run_id in sent_ids():
        if run_id not in shown:
            with contextlib.suppress(TLError):  # a deleted run or a mistyped id: nothing to say
                pending.append(store.get(run_id))
    return pending


def sent_runs_notice(store: RunStore, pending: list[RunRecord]) -> None:
    """Say what became of sent runs that cannot be compared; poll while some still train."""
    for run in pending:
        if not run.is_active:
            name = glue.literal(run_label(run))
            st.caption(f"{name} is {run.status} without results, so it is not compared.")
    active = [run.id for run in pending if run.is_active]
    if active:
        st.fragment(run_every=glue.POLL_ACTIVE_S * 2)(_wait_for)(active, store)


def _wait_for(run_ids: list[str], store: RunStore) -> None:
    runs = []
    for run_id in run_ids:
        with contextlib.suppress(TLError):
            runs.append(store.get(run_id))
    still = [run for run in runs if run.is_active]
    for run in still:
        name = glue.literal(run_label(run))
        st.caption(f"{name} is still {run.status}: it joins the comparison when it finishes.")
    if len(still) < len(run_ids):
        st.rerun()  # one ended: redraw the page with it (or say why it cannot be compared)
