"""Trains one tiny spec on two logical CPU devices, then on one, and prints what to compare as JSON.

Run by ``test_distribution.py`` with ``sys.executable`` in a process of its own: TensorFlow
splits the CPU into logical devices only before it starts them, once per process.
Usage: ``mirrored_run.py STRATEGY EPOCHS FINE_TUNE_EPOCHS`` with ``TL_HOME`` set by the caller.

The validation share is chosen so that every batch of 32 splits evenly (240 training images,
50 for validation): a batch split 12 + 11 is averaged per device, which weighs its images
1/24 and 1/22 instead of 1/23 each, a real (small) difference this comparison would mix in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]

import numpy as np  # noqa: E402 - after the path of the shared test helpers
from specs import tiny_spec  # noqa: E402

from tlcore.errors import ConfigError  # noqa: E402
from tlcore.report.evaluate import predict_probabilities  # noqa: E402
from tlcore.training.loop import RunResult, train  # noqa: E402


def trained(devices: str, strategy: str, epochs: int, fine_tune_epochs: int) -> tuple[RunResult, float]:
    os.environ["TL_DEVICES"] = devices
    started = time.perf_counter()
    spec = tiny_spec(strategy, epochs=epochs, fine_tune_epochs=fine_tune_epochs)
    result = train(dataclasses.replace(spec, dataset=dataclasses.replace(spec.dataset, val_fraction=0.17)))
    return result, time.perf_counter() - started


def refusal(batch_size: int) -> str:
    os.environ["TL_DEVICES"] = "cpu:2"
    try:
        train(tiny_spec(batch_size=batch_size))
    except ConfigError as error:
        return str(error)
    return ""


def main() -> None:
    strategy, epochs, fine_tune_epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mirrored, mirrored_seconds = trained("cpu:2", strategy, epochs, fine_tune_epochs)
    single, single_seconds = trained("cpu:1", strategy, epochs, fine_tune_epochs)
    pairs = list(zip(mirrored.model.get_weights(), single.model.get_weights(), strict=True))
    images = mirrored.bundle.test.images[:5].astype(np.float32)
    print(json.dumps({
        "notes": {"mirrored": mirrored.notes, "single": single.notes},
        "accuracy": {"mirrored": mirrored.test_report().accuracy, "single": single.test_report().accuracy},
        "val_loss": {"mirrored": [epoch.val_loss for epoch in mirrored.history],
                     "single": [epoch.val_loss for epoch in single.history]},
        "max_weight_difference": max(float(np.max(np.abs(a - b))) for a, b in pairs),
        "max_weight": max(float(np.max(np.abs(b))) for _, b in pairs),
        "rows_predicted_after_training": len(predict_probabilities(mirrored.model, images)),
        "seconds": {"mirrored": mirrored_seconds, "single": single_seconds},
        "odd_batch_refusal": refusal(33),
        "train_images": len(single.bundle.train),
    }))


if __name__ == "__main__":
    main()
