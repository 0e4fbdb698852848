import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import keras
import pytest
from apptools import open_app, png_bytes, texts
from runfakes import clone_run, displayed_table
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from tlcore.deploy.export_check import ExportCheck
from tlcore.records import RunArtifacts, RunStatus
from tlcore.report import paired  # the module: pytest would collect a Test* class
from tlcore.report.evaluate import EvalReport
from tlcore.runs.store import RunStore


def test_without_finished_runs_the_page_says_what_to_do():
    at = open_app("pages/compare.py")
    assert not at.exception
    assert "No finished runs yet" in texts(at)


def test_two_runs_side_by_side_with_metrics_downloads_and_mistakes(with_trained_runs):
    at = open_app("pages/compare.py")
    assert not at.exception and not at.error
    assert sorted(at.multiselect(key="compare.runs").value) == sorted(with_trained_runs.run_ids)
    table = at.dataframe[0].value
    columns = {"test accuracy", "macro F1", "train time (s)", "trainable params", "epochs"}
    assert len(table) == 2 and columns <= set(table.columns)
    assert sorted(m.label.split(" · ")[-1] for m in at.metric) == sorted(with_trained_runs.run_ids)
    store = RunStore()
    summaries = {run_id: store.get(run_id).summary for run_id in with_trained_runs.run_ids}
    for row in displayed_table(at):
        summary = summaries[row["run"].split(" · ")[-1]]
        assert row["test accuracy"] == f"{summary.test_accuracy:.1%}"
        assert row["best val accuracy"] == f"{summary.best_val_accuracy:.1%}"
        assert row["backbone"] == "mobilenet_v2 ×0.35", "the width is part of the backbone"
    for metric in at.metric:  # the cards say what the table says
        assert metric.value == f"{summaries[metric.label.split(' · ')[-1]].test_accuracy:.1%}"
    assert len(at.get("plotly_chart")) >= 5  # 2 curves, 2 confusion matrices, per-class F1
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Table as CSV" in labels and sum(label.startswith("Model ") for label in labels) == 2
    for run_id in with_trained_runs.run_ids:
        report = EvalReport.from_dict(store.read_json(run_id, "report.json"))
        wrong = sum(map(sum, report.confusion)) - sum(row[i] for i, row in enumerate(report.confusion))
        [title] = [e.label for e in at.expander if run_id in e.label and "mistake" in e.label]
        assert title.endswith(f"— {len(report.mistakes)} of {wrong} mistakes shown")
        assert len(report.mistakes) < wrong, "the tiny runs make more mistakes than are kept"


def test_a_link_preselects_every_run_it_sent_and_those_still_training_join_when_done(writable_trained_home):
    store = RunStore()
    training = clone_run(store, writable_trained_home[0], "third", RunStatus.RUNNING)
    sent = [*writable_trained_home, training.id]
    at = open_app()
    at.query_params["runs"] = ",".join(sent)
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert at.multiselect(key="compare.runs").value == writable_trained_home
    assert f"{training.id} is still running: it joins the comparison when it finishes." in texts(at)

    store.finish(training.id, RunStatus.FINISHED)
    at.run()
    assert at.multiselect(key="compare.runs").value == sent
    assert "still running" not in texts(at)
    at.multiselect(key="compare.runs").unselect(writable_trained_home[0]).run()
    assert at.multiselect(key="compare.runs").value == sent[1:], "the person's choice is kept"

    fresh = open_app()
    fresh.query_params["runs"] = ",".join(sent)
    fresh.switch_page("pages/compare.py").run()
    assert fresh.multiselect(key="compare.runs").value == sent, "all three, not the newest two"


def test_stopped_runs_with_results_are_offered_marked_as_stopped(writable_trained_home):
    store = RunStore()
    stopped = clone_run(store, writable_trained_home[0], "halfway", RunStatus.STOPPED)
    empty = clone_run(store, writable_trained_home[1], "too early", RunStatus.STOPPED)
    store.update(empty.id, summary=None)
    at = open_app()
    at.query_params["runs"] = f"{stopped.id},{empty.id}"
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    picker = at.multiselect(key="compare.runs")
    assert picker.value == [stopped.id]
    assert f"halfway · {stopped.id} (stopped)" in picker.options
    assert not any(empty.id in option for option in picker.options)
    assert f"{empty.id} is stopped without results" in texts(at)
    assert any(m.label.endswith("(stopped)") for m in at.metric)


def test_uploaded_images_are_classified_by_every_run_and_bad_ones_explained(with_trained_runs):
    at = open_app("pages/compare.py")
    at.file_uploader(key="compare.images").set_value([
        ("square.png", png_bytes((200, 30, 30)), "image/png"),
        ("broken.png", b"not an image at all", "image/png"),
    ])
    at.run()
    assert not at.exception
    assert any("could not be decoded" in e.value for e in at.error)
    assert len(at.get("plotly_chart")) >= 6  # one predictions chart for the good image
    result = texts(at)
    assert all(run_id in result for run_id in with_trained_runs.run_ids)
    assert "**broken\\.png**" in [m.value for m in at.markdown]  # a file name shown as typed


def test_uploads_stay_while_the_runs_are_chosen_again(with_trained_runs):
    first, second = with_trained_runs.run_ids
    at = open_app("pages/compare.py")
    at.file_uploader(key="compare.images").set_value([("square.png", png_bytes((200, 30, 30)), "image/png")])
    at.run()
    at.multiselect(key="compare.runs").set_value([]).run()  # cleared, to pick others
    at.multiselect(key="compare.runs").set_value([second]).run()
    assert not at.exception
    assert [f.name for f in at.file_uploader(key="compare.images").value] == ["square.png"]
    assert any(second in caption.value and "**" in caption.value for caption in at.caption)
    at.multiselect(key="compare.runs").set_value([]).run()
    assert not at.exception
    assert "Pick a run above to classify these images." in texts(at)


def test_below_the_threshold_every_run_answers_not_sure(with_trained_runs):
    at = open_app("pages/compare.py")
    at.file_uploader(key="compare.images").set_value([("square.png", png_bytes((200, 30, 30)), "image/png")])
    at.run()
    assert at.slider(key="compare.threshold").value == 0, "off by default"
    answers = [c.value for c in at.caption if "**" in c.value][-1]
    assert "not sure" not in answers and all(run_id in answers for run_id in with_trained_runs.run_ids)
    at.slider(key="compare.threshold").set_value(100).run()
    assert not at.exception
    answers = [c.value for c in at.caption if "**" in c.value][-1].split("  \n")
    assert len(answers) == 2 and all("**not sure** (best guess " in line for line in answers)


@pytest.fixture
def writable_trained_home(with_trained_runs, tmp_path, monkeypatch):
    """A copy of the shared finished runs that a test may write exports into."""
    home = tmp_path / "tlhome"
    shutil.copytree(with_trained_runs.root, home)
    monkeypatch.setenv("TL_HOME", str(home))
    return with_trained_runs.run_ids


def fake_conversion(monkeypatch) -> list[str]:
    """Keras' converter and the check on test images replaced by fast doubles that record
    their use: tests/tlcore/deploy/test_export.py runs the real ones."""
    formats = []

    def convert(self, path, **kwargs):
        formats.append(kwargs["format"])
        Path(path).write_bytes(b"TFL3")

    monkeypatch.setattr(keras.Model, "export", convert)
    monkeypatch.setattr("tlcore.deploy.export.check_export",
                        lambda *args: ExportCheck(75, 150, 0.68, 0.68, 0.96))
    return formats


def test_export_panel_builds_a_zip_once_then_offers_it_for_download(writable_trained_home, monkeypatch):
    formats = fake_conversion(monkeypatch)
    second = writable_trained_home[1]
    at = open_app("pages/compare.py")
    at.selectbox(key="compare.export_run").set_value(second).run()
    at.selectbox(key="compare.export_format").set_value("tflite_quantized").run()
    assert not [b for b in at.get("download_button") if b.proto.label.startswith("Download ")]
    at.button(key="compare.export").click().run()

    assert not at.exception and not at.error
    assert formats == ["litert"]
    labels = [b.proto.label for b in at.get("download_button")]
    assert any(label.startswith(f"Download {second}-tflite_quantized.zip") for label in labels)
    assert not any(b.key == "compare.export" for b in at.button), "the button gives way to the download"
    assert [w.value for w in at.warning] == [
        "On 75 test images (a sample of 150): this file 68.0%, the studio's model 68.0%; "
        "same top class on 96.0% of them."]
    zipped = RunStore().artifacts(second).export("tflite_quantized")
    with zipfile.ZipFile(zipped) as archive:
        assert sorted(archive.namelist()) == ["labels.txt", "metadata.json", "model.tflite"]
    open_app("pages/compare.py")
    assert formats == ["litert"], "a new session reuses the export"


def test_export_of_a_damaged_model_is_a_friendly_error(writable_trained_home, monkeypatch):
    fake_conversion(monkeypatch)
    first = writable_trained_home[0]
    RunStore().model_path(first).write_bytes(b"not a keras file")
    at = open_app("pages/compare.py")
    at.selectbox(key="compare.export_run").set_value(first).run()
    at.button(key="compare.export").click().run()
    assert not at.exception
    assert any("could not be loaded" in e.value for e in at.error)


def test_two_runs_are_paired_image_by_image_and_a_run_without_answers_says_why(writable_trained_home):
    from tlcore.records import RunArtifacts
    from tlcore.runs.pairing import pair_runs

    at = open_app("pages/compare.py")
    assert not at.exception and not at.error
    store = RunStore()
    first, second = (store.get(run_id) for run_id in at.multiselect(key="compare.runs").value)
    expected = pair_runs(store, first, second)
    shown = [m.value.replace("\\", "") for m in [*at.info, *at.success]]
    assert expected.sentence() in shown, shown  # the verdict, with the run names shown as typed
    classes = next(d.value for d in at.dataframe if "F1 B - A" in d.value.columns)
    assert list(classes["class"]) == [delta.name for delta in expected.per_class]
    for (_, row), delta in zip(classes.iterrows(), expected.per_class, strict=True):
        assert (row["precision B - A"], row["recall B - A"], row["F1 B - A"]) == pytest.approx(
            (delta.precision_delta, delta.recall_delta, delta.f1_delta))
        assert (row["precision A"], row["recall B"]) == pytest.approx((delta.precision[0], delta.recall[1]))
    assert any(f"{len(expected.disagreements)} test image(s) the two runs answer differently" in e.label
               for e in at.expander)

    (store.artifact_dir(second.id) / RunArtifacts.PREDICTIONS).unlink()
    at.multiselect(key="compare.runs").set_value([second.id, first.id]).run()
    assert not at.exception
    assert any("kept no per-image test answers" in m.value for m in at.info)


def paired_on_a_folder(store: RunStore, run_ids: list[str], root: Path, pictured: int, missing: int) -> None:
    """Point both runs at a folder dataset of ``pictured`` images and store answers on which
    A and B disagree everywhere: ``pictured`` images with a file, ``missing`` whose file is gone."""
    names = store.read_json(run_ids[0], "class_names.json")
    ids = [f"{names[i % 2]}/img{i:02d}.png" for i in range(pictured + missing)]
    for image_id in ids[:pictured]:
        (root / image_id).parent.mkdir(parents=True, exist_ok=True)
        (root / image_id).write_bytes(png_bytes((200, 30, 30), size=24))
    true = [i % 2 for i in range(len(ids))]
    for run_id, predicted in zip(run_ids, (true, [1 - t for t in true]), strict=True):
        run = store.get(run_id)
        dataset = dataclasses.replace(run.spec.dataset, source=f"folder:{root}")
        store.update(run_id, spec=dataclasses.replace(run.spec, dataset=dataset).to_dict())
        store.write_json(run_id, RunArtifacts.PREDICTIONS, paired.TestPredictions(
            ids, ids, true, predicted, [0.9] * len(ids), [[p] for p in predicted], names).to_dict())


def test_disagreements_with_image_files_are_thumbnails_and_the_rest_a_table(writable_trained_home, tmp_path):
    store = RunStore()
    paired_on_a_folder(store, writable_trained_home, tmp_path / "flowers", pictured=30, missing=2)
    at = open_app("pages/compare.py")
    at.multiselect(key="compare.runs").set_value(writable_trained_home).run()
    assert not at.exception and not at.error
    [expander] = [e for e in at.expander if "answer differently" in e.label]
    assert expander.label.startswith("32 test image(s)")
    captions = [c for image in at.get("image") for c in image.captions if c.startswith("true ")]
    names = store.read_json(writable_trained_home[0], "class_names.json")
    assert len(captions) == 24 and captions[0] == f"true {names[0]} · A {names[0]} · B {names[1]}"
    assert "Showing 24 of 30 with an image file." in [c.value for c in expander.caption]
    rest = next(d.value for d in at.dataframe if "A answers" in d.value.columns)
    assert list(rest["image"]) == [f"{names[i % 2]}/img{i:02d}.png" for i in range(24, 32)], (
        "the six past the gallery, then the two without a file")


def test_the_explain_toggle_draws_each_runs_heatmap_of_the_chosen_class(with_trained_runs, monkeypatch):
    from imagegen import encode, random_pixels

    def overlay_captions() -> list[str]:
        return [caption for image in at.get("image") for caption in image.captions
                if caption.endswith(" · Grad-CAM")]

    at = open_app("pages/compare.py")
    upload = ("noise.png", encode(random_pixels(3, 48, 48)), "image/png")
    at.file_uploader(key="compare.images").set_value([upload]).run()
    assert at.toggle(key="compare.explain").value is False, "off by default"
    assert not overlay_captions()
    at.toggle(key="compare.explain").set_value(True).run()
    assert not at.exception and not at.error
    predicted = overlay_captions()
    assert len(predicted) == len(with_trained_runs.run_ids)
    for run_id in with_trained_runs.run_ids:
        assert sum(run_id in caption for caption in predicted) == 1
    with monkeypatch.context() as patched:
        patched.setattr("ui.glue.explain", lambda *args: pytest.fail("explained again on a rerun"))
        at.run()
    assert not at.exception and not at.error and overlay_captions() == predicted
    picker = at.selectbox(key="compare.explain_class")
    assert picker.value == "predicted class"
    names = RunStore().read_json(with_trained_runs.run_ids[0], "class_names.json")
    assert picker.options == ["predicted class", *names]
    for name in names:
        at.selectbox(key="compare.explain_class").set_value(name).run()
        assert not at.exception and not at.error
        chosen = overlay_captions()
        assert len(chosen) == len(with_trained_runs.run_ids)
        assert all(f": {name} (" in caption for caption in chosen), chosen


@pytest.fixture
def sent_pictures(monkeypatch) -> list[bytes]:
    """The image files the page hands the browser, in order."""
    sent: list[bytes] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        if mimetype.startswith("image/"):
            sent.append(Path(path_or_data).read_bytes() if isinstance(path_or_data, str) else path_or_data)
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return sent


def test_the_heatmaps_toggle_swaps_the_mistakes_for_their_heatmaps_and_older_runs_say_so(
        writable_trained_home, sent_pictures):
    store = RunStore()
    artifacts = {run_id: store.artifacts(run_id) for run_id in writable_trained_home}
    ranks = {run_id: len(EvalReport.from_dict(store.read_json(run_id, "report.json")).mistakes)
             for run_id in writable_trained_home}

    def files(run_id: str, heatmaps: bool) -> list[bytes]:
        path = artifacts[run_id].mistake_heatmap if heatmaps else artifacts[run_id].mistake_thumbnail
        return [path(rank).read_bytes() for rank in range(ranks[run_id])]

    at = open_app("pages/compare.py")
    first, second = at.multiselect(key="compare.runs").value  # the galleries' order
    assert files(first, True) != files(second, True), "each run explains its own answers"
    assert at.toggle(key="compare.mistakes.heatmaps").value is False, "off by default"
    assert sent_pictures == files(first, False) + files(second, False)
    sent_pictures.clear()
    at.toggle(key="compare.mistakes.heatmaps").set_value(True).run()
    assert not at.exception and not at.error
    assert sent_pictures == files(first, True) + files(second, True)
    assert sum("Heatmaps of the predicted class (Grad-CAM)" in c.value for c in at.caption) == 2

    for rank in range(ranks[second]):  # as a run trained before heatmaps were saved
        artifacts[second].mistake_heatmap(rank).unlink()
    artifacts[second].mistake_heatmap_kind.unlink()
    sent_pictures.clear()
    at.run()
    assert not at.exception and not at.error
    assert sent_pictures == files(first, True) + files(second, False)
    [older] = [c.value for c in at.caption if "This run has no heatmaps" in c.value]
    assert "trained before they were saved" in older


def test_the_per_class_chart_shows_precision_recall_or_f1_from_the_report(with_trained_runs):
    store = RunStore()
    reports = [EvalReport.from_dict(store.read_json(run_id, "report.json"))
               for run_id in with_trained_runs.run_ids]

    def bars(at) -> list[tuple[str, list[float]]]:
        spec = json.loads(at.get("plotly_chart")[4].proto.spec)
        return [(trace.get("yaxis", "y"), trace["y"]) for trace in spec["data"]]

    at = open_app("pages/compare.py")
    picker = at.segmented_control(key="compare.per_class_metric")
    assert picker.value == "f1" and picker.options == ["precision", "recall", "F1", "all three"]
    assert bars(at) == [("y", [c.f1 for c in report.per_class]) for report in reports]
    for metric in ("precision", "recall"):
        at.segmented_control(key="compare.per_class_metric").set_value(metric).run()
        assert not at.exception and not at.error
        assert bars(at) == [("y", [getattr(c, metric) for c in report.per_class]) for report in reports]
    at.segmented_control(key="compare.per_class_metric").set_value("all").run()
    assert bars(at) == [(axis, [getattr(c, metric) for c in report.per_class])
                        for axis, metric in (("y", "precision"), ("y2", "recall"), ("y3", "f1"))
                        for report in reports]
