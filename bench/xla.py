"""Does XLA (``compile(jit_compile=True)``) speed up training steps on this CPU?

Two steps the studio runs, each fitted twice from the same initial weights and seed, without
and with XLA:

a. head only, on cached features: the frozen strategy's upper model (pool -> dropout ->
   softmax) on the pooled MobileNetV2 features, computed once beforehand (untimed).
b. uncached fine-tune step: the whole classifier on images with the top quarter of the
   backbone trainable (BatchNorm frozen), as ``train`` runs it when the feature cache is off.

Both use the studio's own pieces (``build_classifier``, ``FreezePolicy``, ``plan_cut``,
``as_tf_dataset``), Adam and the studio's loss. Keras' ``jit_compile="auto"`` is off on a
CPU-only machine, so the studio currently trains without XLA. The first epoch includes tracing
(and, with XLA, compiling); the later epochs show the steady state.

Run: ``.venv/bin/python bench/xla.py --epochs 10`` (``--quick`` for a sanity check).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence

import common

STEPS = (("a", "(a) head on cached features"), ("b", "(b) uncached fine-tune"))


def main(argv: Sequence[str] | None = None) -> None:
    p = common.parser(__doc__.splitlines()[0])
    common.quick_option(p, "--finetune-epochs", int, 3, 2, "epochs of the uncached fine-tune step")
    common.quick_option(p, "--finetune-images", int, 224, 64,
                        "training images of the uncached fine-tune step, validation a third as "
                        "many (with XLA one epoch over all 700 flowers took minutes here)")
    common.main(p, run, argv)


def run(args: argparse.Namespace, env: common.BenchEnv) -> None:
    import keras

    from tlcore.backbones import build_backbone
    from tlcore.data import load_dataset
    from tlcore.training.cached_stage import plan_cut
    from tlcore.training.compiling import OPTIMIZER_FACTORIES
    from tlcore.training.datasets import as_tf_dataset, one_hot
    from tlcore.training.model import FreezePolicy, backbone_of, build_classifier

    common.print_header("XLA (jit_compile=True) vs default on the studio's training steps", args, {
        "steps": f"(a) head on cached features, all images, {args.epochs} epochs; (b) uncached "
                 f"fine-tune of the top quarter on the first {args.finetune_images} training "
                 f"images, {args.finetune_epochs} epochs",
        "order": "for each step: XLA off, then XLA on, same initial weights and seed",
    })
    spec = common.studio_spec(env, args, strategy="finetune", fine_tune_fraction=0.25)
    bundle = load_dataset(spec.dataset)
    classes = len(bundle.class_names)
    print(f"split           train {len(bundle.train)}, val {len(bundle.val)} images")
    print(f"warm-up         {common.warm_up(args.image_size):.1f} s (untimed)\n")
    keras.utils.set_random_seed(args.seed)
    model = build_classifier(build_backbone(spec.backbone, args.image_size), classes,
                             args.image_size, spec.train)
    backbone = backbone_of(model)
    initial = model.get_weights()

    def fit(fit_model: keras.Model, inputs: dict, targets: dict, jit: bool, epochs: int,
            learning_rate: float) -> dict[str, object]:
        """Fit from the same initial weights and seed; XLA on or off."""
        model.set_weights(initial)
        keras.utils.set_random_seed(args.seed)
        fit_model.compile(optimizer=OPTIMIZER_FACTORIES["adam"](learning_rate),
                          loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"],
                          jit_compile=jit)
        clock = common.epoch_clock()
        history = fit_model.fit(
            as_tf_dataset(inputs["train"], targets["train"], args.batch_size, args.seed),
            validation_data=as_tf_dataset(inputs["val"], targets["val"], args.batch_size, None),
            epochs=epochs, callbacks=[clock], shuffle=False, verbose=0)
        return {"epochs": clock.seconds, "val_acc": history.history["val_accuracy"][-1],
                "jit": fit_model.jit_compile}

    results: dict[tuple[str, bool], dict[str, object]] = {}
    with common.RssSampler() as rss:
        FreezePolicy(0).apply(backbone)
        head = plan_cut(model, FreezePolicy(0))
        features = {name: head.lower.predict(split.images[:].astype("float32"), batch_size=64,
                                             verbose=0)
                    for name, split in (("train", bundle.train), ("val", bundle.val))}
        labels = {"train": one_hot(bundle.train.labels, classes),
                  "val": one_hot(bundle.val.labels, classes)}
        for jit in (False, True):
            with rss.phase(f"(a) head, XLA {'on' if jit else 'off'}"):
                results[("a", jit)] = fit(head.upper, features, labels, jit, args.epochs,
                                          spec.train.learning_rate)
        FreezePolicy.for_finetune(backbone, None, 0.25).apply(backbone)
        cut = {"train": args.finetune_images, "val": max(1, args.finetune_images // 3)}
        images = {"train": bundle.train.images, "val": bundle.val.images}
        images = {name: array[:cut[name]] for name, array in images.items()}
        labels = {name: array[:cut[name]] for name, array in labels.items()}
        for jit in (False, True):
            with rss.phase(f"(b) fine-tune, XLA {'on' if jit else 'off'}"):
                results[("b", jit)] = fit(model, images, labels, jit, args.finetune_epochs,
                                          spec.train.fine_tune_learning_rate)
    report(results, rss.phases)


def report(results: dict[tuple[str, bool], dict[str, object]], phases: list[common.Phase]) -> None:
    """Per-epoch times of each step with XLA off and on, the phases, and the advice."""
    rows = []
    for step, label in STEPS:
        for jit in (False, True):
            r = results[(step, jit)]
            seconds = r["epochs"]
            later = seconds[1:] or seconds
            rows.append([label, "on" if r["jit"] else "off", f"{seconds[0]:.2f}",
                         f"{statistics.median(later):.3f}", f"{sum(seconds):.1f}",
                         f"{r['val_acc']:.3f}"])
    print(common.table(("step", "XLA", "epoch 1 s", "later epochs s (median)", "total s",
                        "final val acc"), rows))
    print()
    print(common.table(common.PHASE_HEADERS, common.phase_rows(phases)))
    print()
    for step, label in STEPS:
        off, on = results[(step, False)]["epochs"], results[(step, True)]["epochs"]
        steady = statistics.median(off[1:] or off) / statistics.median(on[1:] or on)
        total = sum(off) / sum(on)
        if total >= 1.1 and steady >= 1.1:
            advice = "keep XLA"
        elif total <= 0.9 and steady <= 0.9:
            advice = "drop XLA: it is slower"
        else:
            advice = "drop XLA: no clear gain"
        print(f"{label}: XLA speed-up (time off / time on): steady state {steady:.2f}x, whole fit "
              f"{total:.2f}x -> {advice}")
    print(f"load at end     {common.load_text()}")


if __name__ == "__main__":
    main()
