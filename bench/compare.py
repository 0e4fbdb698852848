"""One studio strategy against the plain Keras recipe: phases, tables and the target check.

Shared by ``frozen_vs_recipe.py`` and ``finetune_vs_recipe.py``. Phases run in one process, in
this order, each after a clean Keras session and a reseed:

1. recipe: tf.data over the JPEG files, decoded and pushed through the whole base every epoch.
   (optional) recipe + .cache(): the Keras guide's ``.cache()`` after batching.
2. studio cold: ``tlcore.training.loop.train`` with an empty feature cache, then
   ``tlcore.report.evaluate.evaluate`` on the test split (data loading included, as in a worker).
3. studio warm: the same spec at half the learning rate; the feature key does not include the
   learning rate, so the cached features are reused.
4. (optional) studio uncached: phase 2 with the feature cache off, trained on images.
With ``--repeat N`` the recipe's phases run N times, then the studio's phases N times in turn,
and the fastest of each is compared.

5. (optional) diagnostic: the studio's frozen lower model run four ways on the same images.

The recipe goes first: it then runs in the leanest process (no decoded dataset or cached
features left over from the studio), and the warm-up before it pays TensorFlow's one-time
start-up, so going first costs it nothing. All its repetitions come before the studio's
because ``tlcore.training.loop.train`` raises glibc's allocator thresholds for the rest of the process
(``tlcore.training.allocator``): the recipe runs with glibc's defaults, as a Keras script does, unless
``--same-allocator`` raises them for both sides before the warm-up.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import common

DIAGNOSTIC_IMAGES = 256


@dataclass(frozen=True)
class Comparison:
    """What differs between the frozen and the fine-tuning benchmark.

    Attributes:
        title: First line of the printed header.
        strategy: The studio's ``TrainSpec.strategy``.
        target_speedup: Recipe wall time / studio cold wall time the issue asks for.
        target_points: Largest accuracy difference (in points) that counts as equal; None
            when the issue sets no accuracy target (fine-tuning), so the difference is only
            printed.
        learning_rate: Default learning rate of the trained layers (Adam).
        finetune_fraction: Share of the base's top layers unfrozen (None: all frozen).
    """

    title: str
    strategy: str
    target_speedup: float
    target_points: float | None
    learning_rate: float
    finetune_fraction: float | None = None


def main(cmp: Comparison, description: str, argv: Sequence[str] | None = None) -> None:
    """Parse the options and run the comparison ``cmp``."""
    p = common.parser(description)
    p.add_argument("--learning-rate", type=float, default=cmp.learning_rate,
                   help=f"learning rate of the trained layers (default {cmp.learning_rate:g})")
    p.add_argument("--recipe-cache", action="store_true",
                   help="also time the recipe with .cache() after batching, as the Keras guide "
                        "does on its TFDS pipeline (decodes once, still runs the base every epoch)")
    p.add_argument("--uncached", action="store_true",
                   help="also time the studio with the feature cache off (trains on images): "
                        "shows whether caching changes the result")
    p.add_argument("--repeat", type=int, default=1,
                   help="run recipe, studio cold and studio warm this many times in turn and "
                        "compare the fastest of each (other processes come and go)")
    p.add_argument("--same-allocator", action="store_true",
                   help="raise glibc's allocator thresholds (tlcore.training.allocator) before the "
                        "recipe too; by default the recipe runs with glibc's defaults, as a "
                        "plain Keras script does")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="skip the forward-pass rate check of the studio's feature extraction")
    common.main(p, lambda args, env: run(args, env, cmp), argv)


def run(args: argparse.Namespace, env: common.BenchEnv, cmp: Comparison) -> None:
    import keras_recipe

    fraction = cmp.finetune_fraction
    what = (f"top {fraction:g} of the layers trainable (BatchNorm frozen)" if fraction
            else "frozen")
    common.print_header(cmp.title, args, {
        "backbone": f"MobileNetV2 alpha {common.ALPHA}, {what}; ImageNet no-top 224 px file "
                    f"loaded into a {args.image_size} px model (studio and recipe alike)",
        "learning rate": f"{args.learning_rate:g} (Adam), warm studio run {args.learning_rate / 2:g}",
        "order": f"warm-up, then the recipe {args.repeat} time(s) (first: leanest process, "
                 f"glibc's defaults), then studio cold and warm {args.repeat} time(s) in turn; "
                 "the fastest of each is compared",
        "allocator": allocator_text(args.same_allocator),
    })
    if args.same_allocator:
        from tlcore.training.allocator import keep_freed_memory

        keep_freed_memory()
    split = common.studio_split(env, args)
    print(f"split           {split.counts()} images, {len(split.class_names)} classes "
          f"(written to split.json)")
    print(f"warm-up         {common.warm_up(args.image_size):.1f} s (untimed)")
    decode = keras_recipe.decode_pass_seconds(split, args.image_size, args.batch_size)
    print(f"decode pass     {decode:.1f} s: reading+decoding train+val once, no model (untimed)\n")

    best, phases, rates = measure(args, env, cmp, split)
    report(args, cmp, split, best, phases, rates, decode)


def measure(
    args: argparse.Namespace, env: common.BenchEnv, cmp: Comparison, split: common.FileSplit
) -> tuple[dict[str, Best], list[common.Phase], list[list[object]] | None]:
    """Run the phases ``--repeat`` times in turn; returns the best of each run, every timed
    phase and the diagnostic rows."""
    import keras_recipe

    from tlcore.paths import subdir

    fraction = cmp.finetune_fraction
    recipe_kwargs = {"weights_224": env.weights_224, "image_size": args.image_size,
                     "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed,
                     "learning_rate": args.learning_rate, "finetune_fraction": fraction}
    studio_fields: dict[str, object] = {"strategy": cmp.strategy}
    if fraction:
        studio_fields["fine_tune_fraction"] = fraction

    def studio(rate: float, **extra: object) -> Callable[[], common.StudioResult]:
        fields = {**studio_fields, **_rate_fields(fraction, rate), **extra}
        return lambda: common.run_studio(common.studio_spec(env, args, **fields))

    recipe_runs: list[tuple[str, Callable[[], object]]] = [
        ("recipe", lambda: keras_recipe.run(split, **recipe_kwargs)),
    ]
    if args.recipe_cache:
        recipe_runs.append(("recipe + .cache()", lambda: keras_recipe.run(split, cache=True,
                                                                           **recipe_kwargs)))
    studio_runs: list[tuple[str, Callable[[], object]]] = [
        ("studio cold", studio(args.learning_rate)),
        ("studio warm", studio(args.learning_rate / 2)),
    ]
    if args.uncached:
        studio_runs.append(("studio uncached", studio(args.learning_rate, feature_cache=False)))
    best: dict[str, Best] = {}
    rates = None
    with common.RssSampler() as rss:
        for runs in (recipe_runs, studio_runs):  # see the module docstring for this order
            for repeat in range(args.repeat):
                for name, call in runs:
                    if name == "studio cold":
                        shutil.rmtree(subdir("features"))  # cold means an empty feature store
                    common.reset_keras(args.seed)
                    label = name if args.repeat == 1 else f"{name} #{repeat + 1}"
                    with rss.phase(label) as phase:
                        result = call()
                    best.setdefault(name, Best(result, phase.seconds, phase.cpu_seconds))
                    best[name] = best[name].update(result, phase)
        if not args.no_diagnostics:
            common.reset_keras(args.seed)
            with rss.phase("diagnostic"):
                rates = forward_rates(env, args, fraction)
    return best, rss.phases, rates


@dataclass(frozen=True)
class Best:
    """The fastest repetition of one run: its result, its wall time and the least CPU time."""

    result: object
    seconds: float
    cpu_seconds: float

    def update(self, result: object, phase: common.Phase) -> Best:
        faster = phase.seconds < self.seconds
        return Best(result if faster else self.result, min(self.seconds, phase.seconds),
                    min(self.cpu_seconds, phase.cpu_seconds))


def report(
    args: argparse.Namespace,
    cmp: Comparison,
    split: common.FileSplit,
    best: dict[str, Best],
    phases: list[common.Phase],
    rates: list[list[object]] | None,
    decode: float,
) -> None:
    """Print the comparison, the phases, the breakdown, the diagnostics and the verdict."""
    walls = {name: b.seconds for name, b in best.items()}
    cpus = {name: b.cpu_seconds for name, b in best.items()}
    results = {name: b.result for name, b in best.items()}
    recipe, cold, warm = results["recipe"], results["studio cold"], results["studio warm"]
    rows = []
    for name, res in results.items():
        train_s = res.fit_seconds if name.startswith("recipe") else res.train_seconds
        points = "-" if name == "recipe" else f"{100 * (res.accuracy - recipe.accuracy):+.1f}"
        rows.append([name, f"{walls[name]:.1f}", f"{train_s:.1f}", f"{cpus[name]:.1f}",
                     f"{res.accuracy:.3f}", points, f"{walls['recipe'] / walls[name]:.2f}x",
                     f"{cpus['recipe'] / cpus[name]:.2f}x", f"{res.trainable_params:,}"])
    print(common.table(("run", "wall s", "train s", "CPU s", "test acc", "acc - recipe (points)",
                        "recipe / run (wall)", "recipe / run (CPU)", "trainable params"), rows))
    print()
    print(common.table(common.PHASE_HEADERS, common.phase_rows(phases)))
    print()
    print(common.table(("run", "epochs s", "evaluate s", "images/s through the base"),
                       breakdown(recipe, cold, warm, decode)))
    for note in cold.notes:
        if note.startswith(("Frozen part", "Stage")):
            print(f"studio note: {note}")
    if rates is not None:
        print()
        print(common.table((f"studio frozen lower part, {DIAGNOSTIC_IMAGES} train images",
                            "images/s (best of 2)", "peak - start RSS MB (max)"), rates))
    speedup = walls["recipe"] / walls["studio cold"]
    points = 100 * (cold.accuracy - recipe.accuracy)
    if cmp.target_points is None:
        met = speedup >= cmp.target_speedup
        print(f"\ntarget: studio cold >= {cmp.target_speedup:g}x faster than the recipe: "
              f"{speedup:.2f}x -> {common.verdict(met)} (accuracy {points:+.1f} points, no target)")
    else:
        met = speedup >= cmp.target_speedup and abs(points) <= cmp.target_points
        print(f"\ntarget: studio cold >= {cmp.target_speedup:g}x faster than the recipe at equal "
              f"accuracy (within {cmp.target_points:g} point): {speedup:.2f}x, {points:+.1f} "
              f"points -> {common.verdict(met)}")
    print(f"        by CPU time: cold {cpus['recipe'] / cpus['studio cold']:.2f}x, warm "
          f"{cpus['recipe'] / cpus['studio warm']:.2f}x (other processes inflate wall time more)")
    print(f"        warm cache: {walls['recipe'] / walls['studio warm']:.2f}x; "
          f"1 test image = {100 / len(split.paths['test']):.2f} points")
    print(f"load at end     {common.load_text()}")


def allocator_text(same: bool) -> str:
    if same:
        return "glibc's thresholds raised for both sides before the warm-up (--same-allocator)"
    return ("recipe with glibc's defaults (a plain Keras script); the studio raises glibc's "
            "thresholds when it starts training (tlcore.training.allocator)")


def _rate_fields(fraction: float | None, rate: float) -> dict[str, float]:
    """The TrainSpec field that holds the learning rate the strategy trains with."""
    return {"fine_tune_learning_rate": rate} if fraction else {"learning_rate": rate}


def breakdown(recipe, cold, warm, decode: float) -> list[list[object]]:
    """Where each run's time went, and the rate at which each pushed images through the base."""
    images = cold.train_images + cold.val_images
    later = recipe.epoch_seconds[1:] or recipe.epoch_seconds
    per_epoch = statistics.mean(later)
    rows: list[list[object]] = [[
        "recipe", f"first {recipe.epoch_seconds[0]:.1f}, then {per_epoch:.1f} each",
        f"{recipe.evaluate_seconds:.1f}",
        f"{images / per_epoch:.1f} (fit, train+val; decode alone {decode:.1f} s per pass)",
    ]]
    for name, res in (("studio cold", cold), ("studio warm", warm)):
        epochs = sum(res.epoch_seconds)
        features = res.feature_seconds or 0.0
        beside = res.beside_training_seconds or 0.0
        passed = images + res.test_images
        rate = (f"{passed / features:.1f} (feature pass, train+val+test)"
                if name.endswith("cold") and features else "-")
        rows.append([name, f"all {len(res.epoch_seconds)}: {epochs:.1f}; features {features:.1f}"
                           f" ({beside:.1f} of it beside the epochs); "
                           f"load+build {res.train_seconds - epochs - features + beside:.1f}",
                     f"{res.evaluate_seconds:.1f}", rate])
    return rows


def forward_rates(
    env: common.BenchEnv, args: argparse.Namespace, fraction: float | None
) -> list[list[object]]:
    """The studio's frozen lower model on the same images, called the way
    ``tlcore.training.cached_stage._batched`` calls it (``FEATURE_BATCH`` images per call, BatchNorm
    folded below the head, ``predict_on_batch`` above) and other ways: unfolded, other batch
    sizes, an eager call, ``model.predict``."""
    import numpy as np
    import tensorflow as tf

    from tlcore.backbones import build_backbone
    from tlcore.data import load_dataset
    from tlcore.training.cached_stage import FEATURE_BATCH, plan_cut
    from tlcore.training.folding import FrozenForward
    from tlcore.training.model import FreezePolicy, build_classifier

    spec = common.studio_spec(env, args, strategy="frozen")
    images = load_dataset(spec.dataset).train.images[:DIAGNOSTIC_IMAGES].astype(np.float32)
    resolved = build_backbone(spec.backbone, args.image_size)
    model = build_classifier(resolved, 5, args.image_size, spec.train)
    policy = (FreezePolicy.for_finetune(resolved.model, None, fraction) if fraction
              else FreezePolicy(0))
    policy.apply(resolved.model)
    plan = plan_cut(model, policy)
    lower = plan.lower
    compiled = tf.function(lambda x: lower(x, training=False))

    def batched(call, size: int = FEATURE_BATCH):
        return lambda: [np.asarray(call(images[i:i + size])) for i in range(0, len(images), size)]

    folded = {f"BatchNorm folded, {FEATURE_BATCH} per call (tlcore now)":
              batched(FrozenForward(lower))} if plan.fold_batchnorm else {}
    ways = {
        **folded,
        f"predict_on_batch, {FEATURE_BATCH} per call"
        + ("" if folded else " (tlcore now)"): batched(lower.predict_on_batch),
        **{f"predict_on_batch, {size} per call": batched(lower.predict_on_batch, size)
           for size in (32, 64) if size != FEATURE_BATCH},
        f"tf.function, {FEATURE_BATCH} per call": batched(compiled),
        f"eager call, {FEATURE_BATCH} per call": batched(lambda x: lower(x, training=False)),
        "model.predict, all at once": lambda: lower.predict(images, batch_size=FEATURE_BATCH,
                                                            verbose=0),
    }
    for call in ways.values():
        call()  # every way runs warm (traced for its shapes, kernels ready) when timed
    best: dict[str, tuple[float, float]] = {}
    with common.RssSampler() as rss:
        for _ in range(2):  # interleaved rounds, best of each: other processes come and go
            for name, call in ways.items():
                with rss.phase(name) as phase:
                    call()
                seconds, growth = best.get(name, (float("inf"), 0.0))
                best[name] = (min(seconds, phase.seconds), max(growth, phase.growth_mb))
    return [[name, f"{len(images) / seconds:.1f}", f"{growth:+.0f}"]
            for name, (seconds, growth) in best.items()]
