"""Tiny run specs for tests: the builtin shapes, a narrow MobileNetV2, random weights."""

from __future__ import annotations

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec

TINY_SIZE = 48


def tiny_spec(strategy: str = "frozen", epochs: int = 1, **train_overrides) -> RunSpec:
    return RunSpec(
        dataset=DatasetSpec(source="builtin:shapes", image_size=TINY_SIZE),
        backbone=BackboneSpec(name="mobilenet_v2", alpha=0.35, weights="none"),
        train=TrainSpec(**{"strategy": strategy, "epochs": epochs, "batch_size": 32, **train_overrides}),
    )
