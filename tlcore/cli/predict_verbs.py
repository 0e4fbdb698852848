"""``predict``: images, folders and zips classified by one or several finished runs."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tlcore.cli.output import EXIT_USER_ERROR, emit, json_verb, visible
from tlcore.deploy.batch import BatchAnswer, classify_all, csv_rows, image_sources
from tlcore.errors import ConfigError, StorageError, TLError


def cmd_predict(args: argparse.Namespace) -> int:
    from tlcore.deploy.serving import check_threshold, load_run
    from tlcore.report.evaluate import check_top_k

    check_threshold(args.threshold)  # before the model loads: a typo fails fast
    runs = [load_run(run_id) for run_id in dict.fromkeys(args.run_id.split(","))]
    if args.explain is not None and len(runs) > 1:
        raise ConfigError("--explain takes one run.", "Explain with each run in turn.")
    for loaded in runs:
        if args.top_k is not None:  # once, as one line, rather than as every image's error
            check_top_k(args.top_k, len(loaded.class_names))
    answers = classify_all(runs, image_sources(args.images), top_k=args.top_k, threshold=args.threshold)
    if args.csv:
        return _predictions_csv(answers)
    results, failed = [], False
    for answer in answers:
        row = _prediction_row(answer, several=len(runs) > 1)
        failed = failed or "error" in row
        if args.explain is not None and "error" not in row:
            try:
                row["explanation"] = str(_explain_one(runs[0], answer.image, Path(args.explain)))
            except TLError as exc:
                row, failed = {"image": answer.image, "error": str(exc)}, True
        results.append(row)
    emit(args, results, _describe_predictions)
    return EXIT_USER_ERROR if failed else 0


def _prediction_row(answer: BatchAnswer, several: bool) -> dict[str, Any]:
    """One image's answer as ``predict --json`` prints it (with its run when several answer)."""
    row: dict[str, Any] = {"image": answer.image}
    if several:
        row["run"] = answer.run_id
    if answer.error is not None:
        return {**row, "error": answer.error}
    return {**row, "answer": answer.answer,
            "predictions": [{"label": label, "probability": p} for label, p in answer.top]}


def _predictions_csv(answers: Iterable[BatchAnswer]) -> int:
    """Stream one CSV row per image and run (10,000 images never wait for the last one)."""
    writer, failed, rows = csv.writer(sys.stdout), False, csv_rows(answers)
    writer.writerow(next(rows))
    for row in rows:
        failed = failed or bool(row[-1])  # the error column
        writer.writerow(visible(row))
    return EXIT_USER_ERROR if failed else 0


def _explain_one(loaded: Any, image: str, folder: Path) -> Path:
    """Write the Grad-CAM (or saliency) overlay of ``image``'s predicted class into ``folder``."""
    from tlcore.report.explain import explain, write_overlay

    with loaded.lock:
        explanation = explain(loaded.model, loaded.class_names, [image], loaded.image_size)[0]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return write_overlay(folder, image, loaded.run_id, explanation)
    except OSError as exc:
        raise StorageError(f"Could not write the explanation into {folder} ({exc.strerror or exc}).",
                           "Pass --explain a folder you can write to.") from exc


def _describe_predictions(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        run = f" [{r['run']}]" if "run" in r else ""
        if "error" in r:
            lines.append(f"{r['image']}{run}: error: {r['error']}")
        else:
            tops = ", ".join(f"{p['label']} {p['probability']:.2f}" for p in r["predictions"])
            lines.append(f"{r['image']}{run}: " + (tops if r["answer"] is not None else f"not sure ({tops})"))
            if "explanation" in r:
                lines.append(f"  explanation: {r['explanation']}")
    return "\n".join(lines)


def register(verbs: argparse._SubParsersAction) -> None:
    predict = json_verb(verbs, "predict", cmd_predict, "classify images with a finished run")
    predict.add_argument("run_id", help="a run id, or several separated by commas (RUN,RUN)")
    predict.add_argument("images", nargs="+", help="image files, folders (walked) or zips")
    predict.add_argument("--csv", action="store_true", help="one CSV row per image and run, streamed")
    predict.add_argument("--top-k", type=int, default=None,
                         help="labels per image, 1 to the number of classes (default: up to 3)")
    predict.add_argument("--threshold", type=float, default=None,
                         help="confidence from 0 to 1: below it the answer is 'not sure' (JSON: "
                              "answer null) instead of the most likely class (default: off)")
    predict.add_argument("--explain", metavar="DIR", default=None,
                         help="also write a Grad-CAM overlay PNG per image into DIR")
