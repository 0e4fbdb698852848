import shutil
import zipfile
from pathlib import Path

import keras
import pytest
from apptools import open_app, png_bytes, texts

from tlcore.deploy.export_check import ExportCheck
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
    assert all(m.value.endswith("%") for m in at.metric)
    shown = dict(zip(table["run"].str.split(" · ").str[-1], table["test accuracy"], strict=True))
    store = RunStore()
    for run_id, percent in shown.items():
        assert percent == pytest.approx(100 * store.get(run_id).summary.test_accuracy)
    assert len(at.get("plotly_chart")) >= 5  # 2 curves, 2 confusion matrices, per-class F1
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Table as CSV" in labels and sum(label.startswith("Model ") for label in labels) == 2
    assert "mistake(s) shown" in "\n".join(e.label for e in at.expander)


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
    assert "**broken.png**" in [m.value for m in at.markdown]


@pytest.fixture
def writable_trained_home(with_trained_runs, tmp_path, monkeypatch):
    """A copy of the shared finished runs that a test may write exports into."""
    home = tmp_path / "tlhome"
    shutil.copytree(with_trained_runs.root, home)
    monkeypatch.setenv("TL_HOME", str(home))
    return with_trained_runs.run_ids


def fake_conversion(monkeypatch) -> list[str]:
    """Keras' converter and the check on test images replaced by fast doubles that record
    their use: tests/tlcore/test_export.py runs the real ones."""
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
