"""The Compare page's export panel lists every format built for a run, side by side.

The run is the tiny hub-CNN run of tests/tlcore/deploy/test_export_formats.py (a catalogue
backbone with random weights answers the same for every image, so its int8 agreement would say
nothing), trained once for this module; its exports are real conversions.
"""

from pathlib import Path

import pytest
from apptools import open_app
from learning_runs import train_hub_run

from tlcore.deploy.export import EXPORT_FORMATS, built_exports, export_run
from tlcore.report.summaries import format_percent
from tlcore.runs.store import RunStore


@pytest.fixture(scope="module")
def module_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("panel")


@pytest.fixture(scope="module")
def trained(module_root: Path) -> tuple[RunStore, str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_DATA_ROOT", str(module_root))
        store, run_id = train_hub_run(module_root)
        for name in ("tflite", "tflite_int8"):
            export_run(run_id, name, store)
        return store, run_id


@pytest.fixture
def home(trained, module_root, monkeypatch) -> tuple[RunStore, str]:
    store, run_id = trained
    monkeypatch.setenv("TL_HOME", str(store.root))
    monkeypatch.setenv("TL_DATA_ROOT", str(module_root))
    return store, run_id


def exports_table(at) -> list[dict]:
    tables = [d.value for d in at.dataframe if "Agreement" in d.value.columns]
    assert len(tables) == 1, "one table of exports"
    return tables[0].to_dict("records")


def expected_rows(store: RunStore, run_id: str) -> list[dict]:
    rows = []
    for export in built_exports(run_id, store):
        rows.append({"Format": EXPORT_FORMATS[export.format_name].label,
                     "Accuracy": format_percent(export.check.exported_accuracy),
                     "Studio's model": format_percent(export.check.studio_accuracy),
                     "Agreement": format_percent(export.check.agreement)})
    return rows


def test_the_panel_lists_the_formats_built_with_size_accuracy_and_agreement(home):
    store, run_id = home
    at = open_app("pages/compare.py")
    assert not at.exception and not at.error
    assert at.selectbox(key="compare.export_run").value == run_id

    shown = exports_table(at)
    assert [{key: row[key] for key in ("Format", "Accuracy", "Studio's model", "Agreement")}
            for row in shown] == expected_rows(store, run_id)
    assert [row["Format"] for row in shown] == [EXPORT_FORMATS[name].label
                                                for name in ("tflite", "tflite_int8")]
    float_kb, int8_kb = (float(row["Model"].removesuffix(" KB")) for row in shown)
    assert int8_kb < float_kb / 2.5, "the table shows int8's smaller file"
    build_all = next(b for b in at.button if b.key == "compare.export_all")
    assert build_all.label == "Build the other 4 formats to compare them"

    at.selectbox(key="compare.export_format").set_value("tflite_int8").run()
    assert any(label.startswith(f"Download {run_id}-tflite_int8.zip")
               for label in (b.proto.label for b in at.get("download_button")))
    assert not any(b.key == "compare.export" for b in at.button), "built already: no build button"


@pytest.mark.slow
def test_the_build_all_button_converts_the_missing_formats_and_the_table_grows(home):
    store, run_id = home
    at = open_app("pages/compare.py")
    at.button(key="compare.export_all").click().run()

    assert not at.exception and not at.error
    assert [row["Format"] for row in exports_table(at)] == [fmt.label for fmt in EXPORT_FORMATS.values()]
    assert not any(b.key == "compare.export_all" for b in at.button), "nothing left to build"
    assert len(built_exports(run_id, store)) == len(EXPORT_FORMATS)
