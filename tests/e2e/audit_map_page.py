"""The Compare page's audit section alone, for ``test_audit_map.py``: ``streamlit run`` this file
with ``PYTHONPATH`` at the repository and ``TL_HOME`` holding the runs named by ``TL_AUDIT_RUNS``."""

import os

from tlcore.runs.store import RunStore
from ui.audit_panel import audit_section

store = RunStore()
runs = [store.get(run_id) for run_id in os.environ["TL_AUDIT_RUNS"].split(",")]
audit_section(store, runs, {run.id: f"run {run.id}" for run in runs})
