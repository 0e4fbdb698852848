import csv
import io

from specs import tiny_spec

from tlcore.store import RunStore
from tlcore.summaries import comparison_rows, history_rows, rows_to_csv, run_label, short_label


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
