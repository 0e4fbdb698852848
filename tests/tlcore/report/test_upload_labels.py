"""Uploaded archives keep their names in run labels and tables; the CLI keeps the path."""

from __future__ import annotations

import dataclasses

from archives import dataset_entries, make_zip
from specs import tiny_spec

from tlcore.config import DatasetSpec
from tlcore.data.uploads import save_upload, source_label, uploaded_name
from tlcore.report.summaries import comparison_rows, describe_spec, history_rows, run_label
from tlcore.runs.store import RunStore


def class_zip(tmp_path, per_class: int = 3) -> bytes:
    return make_zip(tmp_path / f"made-{per_class}.zip", dataset_entries(per_class=per_class)).read_bytes()


def test_an_uploaded_zip_is_called_by_its_uploaded_name(tmp_path):
    archive = save_upload(class_zip(tmp_path), "cats_vs_dogs.zip")
    assert archive.name != "cats_vs_dogs.zip" and archive.name.endswith("-cats_vs_dogs.zip")
    assert uploaded_name(archive) == "cats_vs_dogs.zip"
    assert source_label(f"zip:{archive}") == "cats_vs_dogs.zip"
    odd = save_upload(class_zip(tmp_path, per_class=4), "My Pets (2024).zip")
    assert source_label(f"zip:{odd}") == "My-Pets-2024.zip"


def test_other_sources_are_shown_as_written(tmp_path):
    typed = tmp_path / "0ec8f1edbdf63cc3-lookalike.zip"  # named like an upload, but not stored as one
    for source in ("builtin:shapes", "tfds:cats_vs_dogs", f"folder:{tmp_path}", f"zip:{typed}", "zip:"):
        assert source_label(source) == source


def test_run_labels_and_tables_use_the_name_and_the_spec_keeps_the_path(tmp_path):
    archive = save_upload(class_zip(tmp_path), "cats_vs_dogs.zip")
    spec = dataclasses.replace(tiny_spec(), dataset=DatasetSpec(source=f"zip:{archive}", image_size=48))
    store = RunStore()
    run, _ = store.create_run(spec)
    assert describe_spec(spec) == "frozen · mobilenet_v2 · cats_vs_dogs.zip"
    assert run_label(run) == f"frozen · mobilenet_v2 · cats_vs_dogs.zip · {run.id}"
    assert history_rows([run])[0]["dataset"] == "cats_vs_dogs.zip"
    assert str(archive) not in comparison_rows([run])[0]["run"]
    assert store.get(run.id).spec.dataset.source == f"zip:{archive}", "the CLI and the run keep the path"
