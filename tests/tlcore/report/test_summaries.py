import csv
import io

from specs import tiny_spec

from tlcore.runs.store import RunStore
from tlcore.report.summaries import accuracy_gain, comparison_rows, history_rows, rows_to_csv, run_label, short_label


def test_rows_label_and_csv():
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    store.update(run.id, summary={"test_accuracy": 0.5, "macro_f1": 0.4, "best_val_accuracy": 0.6,
                                  "train_seconds": 12.0, "trainable_params": 1234, "epochs": 1})
    run = store.get(run.id)
    assert run_label(run) == f"frozen · mobilenet_v2 · builtin:shapes · {run.id}"
    assert short_label(run) == f"frozen · {run.id}"
    [row] = history_rows([run])
    assert row["backbone"] == "mobilenet_v2 ×0.35" and row["test acc"] == 0.5 and row["duration (s)"] is None
    [compared] = comparison_rows([run])
    assert compared["macro F1"] == 0.4 and compared["trainable params"] == 1234
    parsed = list(csv.DictReader(io.StringIO(rows_to_csv([compared]))))
    assert parsed[0]["test accuracy"] == "0.5"
    assert rows_to_csv([]) == ""


def test_accuracy_gains_are_percentage_points_with_a_sign():
    assert accuracy_gain(0.667, 0.2, "scratch") == "+46.7 points vs scratch"
    assert accuracy_gain(0.8, 0.945, "abc") == "-14.5 points vs abc"
    assert accuracy_gain(0.5, 0.5, "x") == "+0.0 points vs x"
