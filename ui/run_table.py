"""The Train page's table of runs: pick rows to watch one run or delete some, after a confirmation.

Deleting is tied to run ids, never to row positions: the ids are taken from the rows when
Delete is pressed, the confirmation names those runs and deletes exactly them. The table's key
is derived from the ids it shows, so any change of the list (a delete, a new run) starts with
no row ticked, rather than leaving a tick on a row that now holds another run.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from tlcore.errors import RunNotFoundError
from tlcore.records import RunRecord
from tlcore.report.summaries import MISSING, history_rows, run_label
from tlcore.runs.access import User, require_manage
from tlcore.runs.store import RunStore
from ui import glue, widgets

PENDING = "train.delete_pending"
"""Ids of the runs the confirmation asks about."""
FLASH = "train.flash"
TABLE_PREFIX = "train.runs."
PERCENT_COLUMNS = ("best val acc", "test acc")


def table_key(runs: list[RunRecord]) -> str:
    """A key that changes with the list of runs shown, so a changed list starts unselected."""
    digest = hashlib.sha256(",".join(run.id for run in runs).encode()).hexdigest()[:12]
    return TABLE_PREFIX + digest


def history_table(runs: list[RunRecord]) -> Styler:
    """The run history, with accuracies as everywhere else."""
    return widgets.percent_table(pd.DataFrame(history_rows(runs)), list(PERCENT_COLUMNS))


def ask_to_delete(run_ids: list[str]) -> None:
    """Delete's callback: remember which runs were picked; the confirmation asks about them."""
    st.session_state[PENDING] = list(run_ids)


def _cancel() -> None:
    st.session_state.pop(PENDING, None)


def _delete(run_ids: list[str], store: RunStore, user: User) -> None:
    """The confirmation's callback: delete exactly the runs it named."""
    st.session_state.pop(PENDING, None)
    messages = []
    for run_id in run_ids:
        try:
            require_manage(user, store.get(run_id))
            store.delete(run_id)
            messages.append(("success", f"Deleted run {run_id}."))
            if st.session_state.get(glue.WATCHED_RUN) == run_id:
                glue.watch(None)
        except Exception as exc:  # noqa: BLE001 - reported below the table, never raised
            messages.append(("error", f"Run {run_id}: {glue.describe_error(exc, 'deleting a run')}"))
    st.session_state[FLASH] = messages


@st.dialog("Delete runs?", on_dismiss=_cancel)
def _confirm(runs: list[RunRecord], store: RunStore, user: User) -> None:
    st.markdown("These runs and their files (model, report, exports) will be deleted for good:")
    st.markdown("\n".join(f"- **{glue.literal(run_label(run))}** ({run.status})" for run in runs))
    yes, no = st.columns(2)
    yes.button(f"Delete {len(runs)} run{'s' if len(runs) > 1 else ''}", type="primary",
               icon=":material/delete:", key="train.delete_confirm", on_click=_delete,
               args=([run.id for run in runs], store, user))
    no.button("Cancel", key="train.delete_cancel", on_click=_cancel)


def confirm_pending(store: RunStore, user: User) -> None:
    """Open the confirmation while a delete is pending (it survives the page's reruns)."""
    runs = []
    for run_id in st.session_state.get(PENDING, []):
        try:
            runs.append(store.get(run_id))
        except RunNotFoundError:
            continue  # deleted meanwhile, elsewhere
    if runs:
        _confirm(runs, store, user)
    else:
        _cancel()


def runs_table(runs: list[RunRecord], store: RunStore, user: User) -> None:
    """The table, Watch selected and Delete selected (with its confirmation)."""
    for kind, text in st.session_state.pop(FLASH, []):
        (st.success if kind == "success" else st.error)(text)
    with st.container(key="train.runs"):  # a stable handle on the page; the table's own key changes
        event = st.dataframe(history_table(runs), hide_index=True, on_select="rerun", placeholder=MISSING,
                             selection_mode="multi-row", key=table_key(runs),
                             column_config={"duration (s)": st.column_config.NumberColumn(format="%.1f")})
    chosen = [runs[i].id for i in event.selection.rows if i < len(runs)]
    watch_col, delete_col, _ = st.columns([1, 1, 3])
    if watch_col.button("Watch selected", key="train.watch_selected", disabled=len(chosen) != 1):
        glue.watch(chosen[0])
        st.rerun()
    delete_col.button("Delete selected", key="train.delete", icon=":material/delete:",
                      disabled=not chosen, on_click=ask_to_delete, args=(chosen,))
    st.caption("Select rows to watch or delete runs. Stop a running run before deleting it.")
    if PENDING in st.session_state:
        confirm_pending(store, user)
