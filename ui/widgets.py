"""Widgets more than one page (or the frame) shows."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from tlcore.records import ACTIVE, RunRecord
from tlcore.report.summaries import format_percent, run_name
from tlcore.runs import jobs
from ui import glue

TRAIN_PAGE = "pages/train.py"
CONFIGURE_PAGE = "pages/configure.py"
COMPARE_PAGE = "pages/compare.py"


def percent_table(frame: pd.DataFrame, columns: list[str]) -> Styler:
    """``frame`` for ``st.dataframe`` with shares in ``columns`` shown as everywhere (``96.7%``,
    ``—`` for none). Formatted for display only: the numbers stay numbers, so sorting still works.

    A styled frame shows every other float with six decimals: give those a ``column_config`` format.
    """
    return frame.style.format(lambda share: format_percent(None if pd.isna(share) else share), subset=columns)


def jobs_sidebar(train_page: st.Page) -> None:
    """The sidebar's list of queued and running jobs, refreshed while there are any."""
    with st.sidebar:
        busy = bool(glue.attempt(glue.store().list_runs, statuses=ACTIVE, doing="reading the job list"))
        st.fragment(run_every=glue.POLL_ACTIVE_S * 2 if busy else None)(_jobs_panel)(train_page, busy)


def _jobs_panel(train_page: st.Page, was_busy: bool) -> None:
    store = glue.store()
    with glue.friendly("reading the job list"):
        if was_busy:
            jobs.dispatch(store)  # reaps dead workers and starts queued runs that now fit
        active = sorted(store.list_runs(statuses=ACTIVE), key=lambda r: r.created_at)
        st.subheader("Jobs")
        if not active:
            st.caption("No training jobs are running or queued.")
        for run in active:
            _job_entry(run, store.queue_position(run.id), train_page)
        if was_busy and not active:
            st.rerun()  # the last job ended: redraw pages (results, run table) once, then idle


def _job_entry(run: RunRecord, position: int | None, train_page: st.Page) -> None:
    with st.container(border=True):
        where = " · on Ray" if jobs.placement(glue.store(), run) else ""
        st.markdown(f"**{glue.literal(run_name(run, short=True))}**  \n`{run.id}` · {run.status}{where}")
        text = f"queue position {position}" if position else f"{run.progress:.0%}"
        if run.stop_requested and not position:
            text = f"stopping after this batch… {text}"
        st.progress(min(max(run.progress, 0.0), 1.0), text=text)
        st.page_link(train_page, label="Watch on the Train page", icon=":material/monitoring:",
                     query_params={glue.RUN_PARAM: run.id})
