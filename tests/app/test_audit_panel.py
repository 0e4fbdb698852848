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
from tlcore.report.audit import DataAudit, MapPoint, SplitEmbeddings, audit_embeddings
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


def small_audit(points: tuple[MapPoint, ...]) -> DataAudit:
    return DataAudit(("cat", "dog"), {"train": 0, "val": 0, "test": len(points)}, 0.9999, 0.9, (), (), 0, 0,
                     (), points, "PCA of all 3 test images")


def test_the_map_spec_colours_classes_marks_mistakes_and_puts_each_picture_in_its_tooltip() -> None:
    from tlcore.report.audit_plots import CROSS_PATH, embedding_map_spec
    from tlcore.report.plots import RUN_COLORS

    points = (MapPoint("a.png", 0.0, 0.0, 0, 0), MapPoint("b.png", 1.0, 1.0, 0, 1),
              MapPoint("<i>c</i>\u202e.png", 2.0, 2.0, 1, 1))
    spec = embedding_map_spec(small_audit(points), ["data:image/jpeg;base64,AAA", None])
    rows, encoding = spec["data"]["values"], spec["encoding"]
    assert [row["position"] for row in rows] == [0, 1, 2]
    assert [row.get("image") for row in rows] == ["data:image/jpeg;base64,AAA", None, None]
    assert [row["answer"] for row in rows] == ["right", "wrong", "right"]
    assert rows[1]["predicted"] == "dog (wrong)" and rows[1]["size"] > rows[0]["size"] and rows[1]["outline"]
    assert rows[2]["title"] == "<i>c</i>\\u202e.png", "invisible characters spelled out; vega-tooltip escapes"
    assert encoding["color"]["scale"] == {"domain": ["cat", "dog"], "range": list(RUN_COLORS[:2])}
    assert encoding["shape"]["scale"] == {"domain": ["right", "wrong"], "range": ["circle", CROSS_PATH]}
    assert [item["field"] for item in encoding["tooltip"]][:2] == ["title", "image"]  # heading, picture
    assert encoding["description"] == {"field": "description"}
    assert "base64" not in " ".join(row["description"] for row in rows)
    assert spec["title"]["subtitle"] == ["PCA of all 3 test images",
                                         "1 mistake(s) marked ✕ · hover a point to see its picture"]


def test_picked_points_are_the_clicked_ones_then_those_in_the_box_each_once() -> None:
    from ui.audit_panel import picked_positions

    audit = small_audit(tuple(MapPoint(f"{k}.png", float(k), float(-k), 0, 0) for k in range(5)))
    assert picked_positions({}, audit) == []
    assert picked_positions({PICKED: [{"position": 3}, {"position": 9}, {"position": "1"}]}, audit) == [3]
    box = {"x": [0.5, 2.5], "y": [-0.5, -2.5]}  # ranges come in drag order
    assert picked_positions({PICKED: [{"position": 2}], BOXED: box}, audit) == [2, 1]
    assert picked_positions({PICKED: [], BOXED: {"x": [0, 1]}}, audit) == [], "half a box picks nothing"


def test_a_hover_picture_is_a_small_jpeg_and_a_missing_thumbnail_gives_none(tmp_path) -> None:
    import base64
    import io

    from imagegen import png_declaring
    from PIL import Image

    from tlcore.report.audit_plots import MAP_PICTURE_PX, picture_uri

    Image.new("RGB", (96, 64), (200, 30, 30)).save(tmp_path / "map-00000.jpg", "JPEG")
    uri = picture_uri(tmp_path / "map-00000.jpg")
    prefix = "data:image/jpeg;base64,"
    assert uri.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):]))) as picture:
        assert max(picture.size) == MAP_PICTURE_PX and picture.format == "JPEG"
    assert picture_uri(tmp_path / "missing.jpg") is None
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    assert picture_uri(tmp_path / "broken.jpg") is None
    (tmp_path / "bomb.jpg").write_bytes(png_declaring(60_000, 60_000))  # a thumbnail's name, a bomb's header
    assert picture_uri(tmp_path / "bomb.jpg") is None
