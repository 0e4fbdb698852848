"""The Compare page's data-audit section: a stored audit rendered, and what to do without one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runfiles import finished_run
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

import tlcore.runs.auditing
from tlcore.config import RunSpec
from tlcore.data.bundle import Split
from tlcore.records import RunStatus
from tlcore.report.audit import SplitEmbeddings, audit_embeddings
from tlcore.report.audit_plots import BOXED, PICKED
from tlcore.runs import tasks
from tlcore.runs.auditing import AUDIT_FILE, audit_folder, map_thumbnail_path, save_audit, thumbnail_path
from tlcore.runs.store import RunStore


def render(run_ids: list[str]) -> None:
    """The section alone, as the Compare page calls it (AppTest runs this function as a script)."""
    from tlcore.runs.store import RunStore
    from ui.audit_panel import audit_section

    store = RunStore()
    runs = [store.get(run_id) for run_id in run_ids]
    audit_section(store, runs, {run.id: f"run {run.id}" for run in runs})


def stored_audit_for(store: RunStore, run_id: str):
    """An audit of generated pictures: test 0 and 1 copies of training pictures 5 and 35 (test 0
    labelled otherwise), training pictures 2 and 3 labelled as the other class."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 256)) * 1.5
    labels = np.repeat([0, 1], 30)
    rows = (centres[labels] + rng.normal(size=(60, 256))).astype(np.float32)
    images = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    rows[40:42], images[40:42] = rows[[5, 35]], images[[5, 35]]
    labels[40] = 1
    labels[[2, 3]] = 1
    index = {"train": np.r_[0:40], "val": np.r_[42:51], "test": np.r_[40:42, 51:60]}
    splits = {name: Split(images[i], labels[i], [f"{name}/{k}.png" for k in range(len(i))])
              for name, i in index.items()}
    embeddings = [SplitEmbeddings(name, split.ids, split.identities, split.labels, rows[index[name]])
                  for name, split in splits.items()]
    audit = audit_embeddings(embeddings, ["circle", "square"], splits["test"].labels)
    save_audit(store, run_id, audit, splits)
    return audit


def test_a_stored_audit_is_shown_and_a_run_without_one_says_how_to_get_it(monkeypatch) -> None:
    store = RunStore()
    audited, plain = finished_run(store), finished_run(store, learning_rate=0.01)
    audit = stored_audit_for(store, audited)
    assert audit.warnings() and audit.leaks and audit.label_issues
    monkeypatch.setattr(tlcore.runs.auditing, "audit_run",
                        lambda *_, **__: pytest.fail("the page must not compute an audit"))
    at = AppTest.from_function(render, args=([audited, plain],), default_timeout=60).run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == audit.warnings()
    assert any(audit.criteria() in c.value for c in at.caption)
    assert [s.value for s in at.subheader] == [
        f"Copies across splits ({len(audit.leaks)} of {sum(c.total for c in audit.leak_counts)} shown)",
        f"Likely label errors ({len(audit.label_issues)} of {audit.label_issue_count} shown)"]
    captions = [caption for element in at.get("image") for caption in element.captions]
    for pair in audit.leaks:
        assert f"{pair.split}: {pair.id}" in captions and f"{pair.other_split}: {pair.other_id}" in captions
        assert thumbnail_path(store, audited, pair.split, pair.index).exists()
    assert any("labelled square, looks like circle" in caption for caption in captions)
    assert any("The two copies carry different labels" in m.value for m in at.markdown)
    issues = at.dataframe[0].value
    assert list(issues["image"]) == [issue.id for issue in audit.label_issues]
    [chart] = at.get("vega_lite_chart")
    assert all(map_thumbnail_path(store, audited, k).exists() for k in range(len(audit.map_points)))
    rows = convert_arrow_bytes_to_pandas_df(chart.proto.data.data)  # Streamlit moves the rows there
    assert list(rows["position"]) == list(range(len(audit.map_points)))  # a picked point finds its picture
    assert all(uri.startswith("data:image/jpeg;base64,") for uri in rows["image"])  # the hover picture
    assert list(chart.proto.selection_mode) == sorted([PICKED, BOXED])
    assert any("Hover a point to see its picture" in c.value for c in at.caption)
    command = f"python -m tlcore audit {plain}"
    assert any("no data audit yet" in i.value and command in i.value for i in at.info)
    started: list[str] = []
    monkeypatch.setattr(tasks, "_spawn", lambda identifier, folder: started.append(identifier))
    at.button(key=f"compare.audit.{plain}.start").click().run()
    assert not at.exception and len(started) == 1
    request = json.loads((tasks.task_folder(started[0]) / tasks.REQUEST).read_text())
    assert request["kind"] == "audit" and request["options"] == {"run_id": plain}


def test_scratch_runs_and_damaged_audits_are_explained_without_a_traceback() -> None:
    store = RunStore()
    scratch, _ = store.create_run(RunSpec().with_strategy("scratch"))
    store.finish(scratch.id, RunStatus.FINISHED)
    damaged = finished_run(store)
    audit_folder(store, damaged).mkdir()
    (audit_folder(store, damaged) / AUDIT_FILE).write_text("{not json")
    at = AppTest.from_function(render, args=([scratch.id, damaged],), default_timeout=60).run()
    assert not at.exception and not at.error
    assert any("trained from scratch" in c.value for c in at.caption)
    [warning] = at.warning
    assert "damaged" in warning.value and f"audit {damaged} --again" in warning.value
