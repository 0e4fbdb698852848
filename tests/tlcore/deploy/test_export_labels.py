"""Class names with line breaks or direction overrides: one label line per output, shown escaped.

Datasets refuse such names now, but runs made before, TFDS names and hub models may carry
them, so the run here is written straight into the store as an older version would have.
"""

import dataclasses
import json
import unicodedata
import zipfile

import keras
import numpy as np
import pytest
from PIL import Image
from specs import TINY_SIZE, tiny_spec

from tlcore.cli import main
from tlcore.data import Split
from tlcore.data.builtin import SHAPE_OUTLINES
from tlcore.deploy.export import export_run, labels_text, visible_label
from tlcore.records import RunArtifacts, RunStatus
from tlcore.report.evaluate import report_from_probabilities
from tlcore.runs.store import Claimant, RunStore

HOSTILE = ["a\nb", "x\u202ey", "tab\there", "zero\u200bwidth", "para\u2029graph", "nul\x00", "cr\rlf"]
INVISIBLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def class_names() -> list[str]:
    """As many hostile names as the shapes dataset (used for the export check) has classes."""
    count = len(SHAPE_OUTLINES)
    return (HOSTILE + [f"plain{i}" for i in range(count)])[:count]


@pytest.fixture
def hostile_run() -> tuple[RunStore, str]:
    """A finished run whose model has one output per hostile class name."""
    store = RunStore()
    spec = dataclasses.replace(tiny_spec(), name="evil\u202eeman\nsecond line")
    run, _ = store.create_run(spec, claimant=Claimant.current())
    names = class_names()
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(len(names), activation="softmax")(pooled))
    artifacts = store.artifacts(run.id)
    artifacts.folder.mkdir(parents=True)
    model.save(artifacts.model)
    store.write_json(run.id, RunArtifacts.CLASS_NAMES, names)
    test = Split(np.zeros((len(names), 4, 4, 3), np.uint8), np.arange(len(names)),
                 [str(i) for i in range(len(names))])
    report = report_from_probabilities(np.eye(len(names))[::-1], test, names)
    store.write_json(run.id, RunArtifacts.REPORT, report.to_dict())
    store.add_note(run.id, f"class {names[0]} has few images")
    store.finish(run.id, RunStatus.FINISHED)
    return store, run.id


def no_invisible_characters(text: str) -> bool:
    """Nothing invisible but line ends (CSV ends its rows with CR LF)."""
    lines = text.replace("\r\n", "\n").replace("\n", "")
    return not any(unicodedata.category(char) in INVISIBLE for char in lines)


def test_visible_label_spells_out_invisible_characters_and_keeps_the_rest():
    assert visible_label("a\nb") == r"a\u000ab"
    assert visible_label("x\u202ey") == r"x\u202ey"
    assert visible_label("tag\U000e0041") == r"tag\U000e0041"
    assert visible_label("Café 東京 (v2) ✓ a\\b") == "Café 東京 (v2) ✓ a\\b"
    assert labels_text(["a\nb", "c"]) == "a\\u000ab\nc\n"


def test_export_writes_one_label_line_per_output_and_keeps_the_true_names_in_metadata(
        hostile_run, tmp_path):
    store, run_id = hostile_run
    names = class_names()
    with zipfile.ZipFile(export_run(run_id, "tflite", store)) as archive:
        labels = archive.read("labels.txt").decode("utf-8")
        metadata = json.loads(archive.read("metadata.json"))

    assert len(labels.splitlines()) == len(labels.split("\n")) - 1 == len(names)
    assert labels.splitlines()[:2] == [r"a\u000ab", r"x\u202ey"]
    assert no_invisible_characters(labels)
    assert metadata["labels"] == names
    assert metadata["output"]["shape"] == [1, len(names)]
    assert metadata["check"]["agreement"] == 1.0


def test_the_cli_prints_class_and_run_names_escaped(hostile_run, tmp_path, capsys):
    store, run_id = hostile_run
    image = tmp_path / "pic.png"
    Image.fromarray(np.full((30, 30, 3), 120, np.uint8)).save(image)

    assert main(["predict", run_id, str(image), "--top-k", str(len(class_names()))]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and no_invisible_characters(out)
    assert r"a\u000ab" in out and r"x\u202ey" in out

    for args in (["compare", run_id], ["compare", run_id, "--csv"], ["runs"]):
        assert main(args) == 0
        out = capsys.readouterr().out
        assert no_invisible_characters(out) and r"evil\u202eeman\u000asecond line" in out, args
    assert main(["show", run_id]) == 0
    out = capsys.readouterr().out
    assert no_invisible_characters(out) and r"note: class a\u000ab has few images" in out

    assert main(["predict", run_id, str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["predictions"][0]["label"] in class_names()
