"""``predict``: images, folders and zips classified by one or several finished runs."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlcore.cli.output import EXIT_USER_ERROR, emit, json_verb, visible
from tlcore.deploy.batch import CSV_HEADER, BatchAnswer, classify_with_sources, csv_row, image_sources
from tlcore.errors import StorageError, TLError

if TYPE_CHECKING:
    from tlcore.deploy.serving import LoadedRun

Explained = tuple[BatchAnswer, Path | None]
"""One run's answer for one image, and the overlay PNG written for it (None: not explained)."""


def cmd_predict(args: argparse.Namespace) -> int:
    from tlcore.deploy.serving import check_threshold, load_run
    from tlcore.report.evaluate import check_top_k

    check_threshold(args.threshold)  # before the model loads: a typo fails fast
    runs = [load_run(run_id) for run_id in dict.fromkeys(args.run_id.split(","))]
    for loaded in runs:
        if args.top_k is not None:  # once, as one line, rather than as every image's error
            check_top_k(args.top_k, len(loaded.class_names))
    folder = _explain_folder(args.explain)  # once: an unwritable folder is one error, not one per image
    answers = classify_with_sources(runs, image_sources(args.images), top_k=args.top_k,
                                    threshold=args.threshold)
    explained = _with_explanations(answers, runs, folder)
    if args.csv:
        return _predictions_csv(explained, folder is not None)
    results, failed = [], False
    for answer, overlay in explained:
        row = _prediction_row(answer, several=len(runs) > 1)
        if overlay is not None:
            row["explanation"] = str(overlay)
        failed = failed or "error" in row
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


def _predictions_csv(explained: Iterable[Explained], with_overlays: bool) -> int:
    """Stream one CSV row per image and run (10,000 images never wait for the last one).

    With overlays, an ``explanation`` column names each row's PNG.
    """
    writer, failed = csv.writer(sys.stdout), False
    writer.writerow([*CSV_HEADER, *(["explanation"] if with_overlays else [])])
    for answer, overlay in explained:
        failed = failed or bool(answer.error)
        row = csv_row(answer) + ([str(overlay or "")] if with_overlays else [])
        writer.writerow(visible(row))
    return EXIT_USER_ERROR if failed else 0


def _explain_folder(explain: str | None) -> Path | None:
    """The ``--explain`` folder, created (None without ``--explain``)."""
    if explain is None:
        return None
    folder = Path(explain)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"Could not create the explanation folder {folder} ({exc.strerror or exc}).",
                           "Pass --explain a folder you can write to.") from exc
    return folder


def _with_explanations(
    answers: Iterable[tuple[BatchAnswer, str | bytes | None]], runs: Sequence[LoadedRun], folder: Path | None
) -> Iterator[Explained]:
    """Each answer with its overlay written into ``folder`` by the run that answered.

    An image that cannot be explained becomes an error row, like one that cannot be classified.
    """
    by_id = {loaded.run_id: loaded for loaded in runs}
    for answer, image in answers:
        if folder is None or answer.error is not None or image is None:
            yield answer, None
            continue
        try:
            yield answer, _explain_one(by_id[answer.run_id], answer.image, image, folder)
        except TLError as exc:
            yield dataclasses.replace(answer, answer=None, top=[], error=str(exc)), None


def _explain_one(loaded: LoadedRun, name: str, image: str | bytes, folder: Path) -> Path:
    """Write the Grad-CAM (or saliency) overlay of the predicted class, drawn at the image's size.

    ``image`` is the file or the zip member's bytes the answer was computed from; ``name`` is
    what is shown (``photos.zip:cats/01.jpg``), from which the PNG is named, run id included,
    so several runs' overlays of one image sit side by side.
    """
    from tlcore.report.explain import explain, write_overlay

    with loaded.lock:
        explanation = explain(loaded.model, loaded.class_names, [image], loaded.image_size)[0]
    try:
        return write_overlay(folder, name, loaded.run_id, explanation, source=image)
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
                         help="also write a Grad-CAM overlay PNG per image and run into DIR, named "
                              "<image>-<hash>-<run>-<kind>.png (also with --csv and --json)")
