"""Heatmaps over the most confident mistakes: one per saved thumbnail, never a failed run."""

from __future__ import annotations

import dataclasses
import errno
import os

import numpy as np
import pytest
from PIL import Image
from specs import tiny_spec

from tlcore.deploy.serving import load_run
from tlcore.records import RunStatus
from tlcore.report.evaluate import EvalReport, evaluate
from tlcore.report.explain import GRAD_CAM, explain_batch, overlay
from tlcore.runs import jobs
from tlcore.runs.runner import execute_run, save_artifacts
from tlcore.runs.store import RunStore
from tlcore.training.loop import RunResult, train


def finished(store: RunStore) -> str:
    run, _ = store.create_run(tiny_spec("frozen"))
    jobs.claim_for_this_process(store, run.id)
    record = execute_run(store, run.id)
    assert record.status == RunStatus.FINISHED, record.error
    return run.id


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_every_saved_mistake_gets_the_heatmap_of_its_predicted_class() -> None:
    store = RunStore()
    run_id = finished(store)
    artifacts = store.artifacts(run_id)
    report = EvalReport.from_dict(store.read_json(run_id, "report.json"))
    assert report.mistakes, "the tiny run makes mistakes"
    thumbnails = sorted(artifacts.mistakes.glob("[0-9][0-9].png"))
    heatmaps = sorted(artifacts.mistakes.glob("*-heatmap.png"))
    assert len(thumbnails) == len(heatmaps) == len(report.mistakes)
    assert artifacts.mistake_heatmap_kind.read_text() == GRAD_CAM

    loaded, names = load_run(run_id, store), store.read_json(run_id, "class_names.json")
    for predicted in {m.predicted for m in report.mistakes}:
        ranks = [rank for rank, m in enumerate(report.mistakes) if m.predicted == predicted]
        thumbnails = np.stack([pixels(artifacts.mistake_thumbnail(rank)) for rank in ranks]).astype(np.uint8)
        explained = explain_batch(loaded.model, names, thumbnails, names.index(predicted))
        for rank, thumbnail, explanation in zip(ranks, thumbnails, explained, strict=True):
            saved = pixels(artifacts.mistake_heatmap(rank))
            assert saved.shape == thumbnail.shape
            assert np.abs(saved - overlay(thumbnail, explanation.heatmap)).mean() < 2.0, predicted
            assert np.abs(saved - thumbnail).mean() > 5.0, "a heatmap is drawn over the image"
    assert not any("heatmaps" in note for note in store.get(run_id).notes)


def test_a_model_that_cannot_be_explained_still_finishes_with_a_note(monkeypatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no gradient reaches the feature map")

    monkeypatch.setattr("tlcore.runs.runner.explain_batch", broken)
    store = RunStore()
    run_id = finished(store)
    artifacts = store.artifacts(run_id)
    assert list(artifacts.mistakes.glob("[0-9][0-9].png")), "the thumbnails are kept"
    assert not list(artifacts.mistakes.glob("*-heatmap.png")) and not artifacts.mistake_heatmap_kind.exists()
    [note] = [note for note in store.get(run_id).notes if "heatmaps" in note]
    assert "could not be explained (RuntimeError: no gradient reaches the feature map)" in note
    assert store.get(run_id).summary is not None


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, EvalReport]:
    """One tiny trained model and its report, for the tests that write artifacts directly."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_HOME", str(tmp_path_factory.mktemp("home")))
        patch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras")))
        result = train(tiny_spec("frozen"))
        return result, evaluate(result.model, result.bundle.test, result.bundle.class_names)


def test_a_full_disk_while_drawing_heatmaps_fails_like_any_artifact(monkeypatch, trained) -> None:
    original = Image.Image.save

    def save(self: Image.Image, target, *args: object, **kwargs: object) -> None:
        if str(target).endswith("-heatmap.png"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(self, target, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    store = RunStore()
    run, _ = store.create_run(tiny_spec("frozen"))
    with pytest.raises(OSError):
        save_artifacts(store, run.id, *trained)
    assert not store.artifacts(run.id).mistakes.exists(), "nothing incomplete is kept"
    assert not any("heatmaps" in note for note in store.get(run.id).notes), "not taken for a model fault"


def test_the_heatmap_is_of_the_class_the_report_names_even_where_the_model_leans_another_way(
        trained) -> None:
    result, report = trained
    report = dataclasses.replace(report, mistakes=list(report.mistakes))
    names = result.bundle.class_names
    first = report.mistakes[0]
    image = np.asarray(result.bundle.test.images[first.index], dtype=np.uint8)

    def drawn(name: str) -> np.ndarray:
        [explained] = explain_batch(result.model, names, image[None], names.index(name))
        return overlay(image, explained.heatmap).astype(np.int16)

    # Name another class than the model's top one for the first mistake, as a near tie broken
    # the other way would (the class whose map differs most): its heatmap must still explain
    # the class the gallery's caption names.
    other = max((name for name in names if name != first.predicted),
                key=lambda name: np.abs(drawn(name) - drawn(first.predicted)).mean())
    assert np.abs(drawn(other) - drawn(first.predicted)).mean() > 5.0, "the two maps differ"
    report.mistakes[0] = dataclasses.replace(first, predicted=other)
    store = RunStore()
    run, _ = store.create_run(tiny_spec("frozen"))
    save_artifacts(store, run.id, result, report)

    saved = pixels(store.artifacts(run.id).mistake_heatmap(0))
    assert np.abs(saved - drawn(other)).mean() < 2.0
