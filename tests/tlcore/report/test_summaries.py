import csv
import io

from specs import tiny_spec

from tlcore.report.summaries import (
    accuracy_gain,
    comparison_rows,
    format_percent,
    headline_accuracy,
    history_rows,
    rows_to_csv,
    run_label,
    run_name,
)
from tlcore.runs.store import RunStore


def test_rows_label_and_csv():
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    store.update(run.id, summary={"test_accuracy": 0.5, "macro_f1": 0.4, "best_val_accuracy": 0.6,
                                  "train_seconds": 12.0, "trainable_params": 1234, "epochs": 1})
    run = store.get(run.id)
    assert run_label(run) == f"frozen · mobilenet_v2 · builtin:shapes · {run.id}"
    assert run_label(run, short=True) == f"frozen · {run.id}"
    assert run_name(run, short=True) == "frozen" and headline_accuracy(run) == 0.5
    [row] = history_rows([run])
    assert row["backbone"] == "mobilenet_v2 ×0.35" and row["test acc"] == 0.5 and row["duration (s)"] is None
    [compared] = comparison_rows([run])
    assert compared["macro F1"] == 0.4 and compared["trainable params"] == 1234
    parsed = list(csv.DictReader(io.StringIO(rows_to_csv([compared]))))
    assert parsed[0]["test accuracy"] == "0.5"
    assert rows_to_csv([]) == ""


def test_rows_of_a_run_without_a_summary_leave_its_metrics_empty():
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    [row] = history_rows([run])
    [compared] = comparison_rows([run])
    assert row["test acc"] is None and row["best val acc"] is None
    assert compared["test accuracy"] is None and compared["epochs"] is None
    assert headline_accuracy(run) == 0.0


def test_accuracy_gains_are_percentage_points_with_a_sign():
    assert accuracy_gain(0.667, 0.2, "scratch") == "+46.7 points vs scratch"
    assert accuracy_gain(0.8, 0.945, "abc") == "-14.5 points vs abc"
    assert accuracy_gain(0.5, 0.5, "x") == "+0.0 points vs x"


def test_percentages_read_the_same_everywhere_and_a_missing_one_is_a_dash():
    assert format_percent(0.96667) == "96.7%"
    assert format_percent(1.0) == "100.0%" and format_percent(0.0) == "0.0%"
    assert format_percent(None) == "—"


def test_the_comparison_names_the_backbone_with_its_width():
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    [row] = comparison_rows([store.get(run.id)])
    assert row["backbone"] == "mobilenet_v2 ×0.35"
    assert "mobilenet_v2 ×0.35" in rows_to_csv([row])
