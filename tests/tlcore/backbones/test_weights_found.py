"""Which ImageNet weights are on disk, per backbone, width and size, and the default chosen from them.

The files are fakes named as Keras names them: MobileNet and MobileNetV2 files carry no Keras
checksum, so the right name is all Keras (and the catalogue) asks of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tlcore.backbones.catalogue import (
    CATALOGUE,
    WeightsOnDisk,
    default_backbone,
    describe_catalogue,
    weights_found,
)
from tlcore.paths import keras_models_dir

ROOT = Path(__file__).resolve().parents[3]
V2 = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels"
RESNET = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
THIS_SERVER = (  # what ../shared/assets/keras-weights holds, plus a file with the top
    "mobilenet_2_5_224_tf_no_top.h5", "mobilenet_7_5_224_tf_no_top.h5", "mobilenet_7_5_224_tf.h5",
    f"{V2}_0.35_224_no_top.h5",
)


def put(*names: str) -> Path:
    cache = keras_models_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for name in names:
        (cache / name).write_bytes(b"fake h5")
    return cache


def rows() -> dict[str, dict]:
    return {row["name"]: row for row in describe_catalogue()}


def test_an_empty_cache_has_no_weights_for_any_backbone():
    table = rows()
    assert list(table) == list(CATALOGUE)
    assert not any(row["weights_on_disk"] or row["widths_on_disk"] or row["weights"]
                   for row in table.values())
    assert {row["on_disk"] for row in table.values()} == {"none"}


def test_every_width_on_disk_is_listed_not_only_the_default_one():
    put(*THIS_SERVER)
    table = rows()
    assert table["mobilenet"]["weights_on_disk"] and table["mobilenet_v2"]["weights_on_disk"]
    assert table["mobilenet"]["widths_on_disk"] == [0.25, 0.75]
    assert table["mobilenet_v2"]["widths_on_disk"] == [0.35]
    assert weights_found("mobilenet_v2") == [WeightsOnDisk(0.35, (224,), any_size=True)]
    assert table["mobilenet_v2"]["on_disk"] == "α 0.35 (224 px)"
    assert table["mobilenet"]["on_disk"] == "α 0.25 (224 px), α 0.75 (224 px)"
    assert "224 px no-top file stands in for any size" in table["mobilenet"]["size_rule"]
    assert not table["resnet50"]["size_rule"], "the rule applies to size-named families only"
    others = [name for name, row in table.items() if row["weights_on_disk"]]
    assert others == ["mobilenet", "mobilenet_v2"]


def test_sizes_without_the_224_px_file_serve_only_themselves():
    put("mobilenet_5_0_128_tf_no_top.h5", "mobilenet_5_0_160_tf_no_top.h5",
        f"{V2}_1.0_96_no_top.h5", f"{V2}_1.0_224_no_top.h5")
    assert weights_found("mobilenet") == [WeightsOnDisk(0.5, (128, 160), any_size=False)]
    assert weights_found("mobilenet_v2") == [WeightsOnDisk(1.0, (96, 224), any_size=True)]
    table = rows()
    assert table["mobilenet"]["on_disk"] == "α 0.5 (128, 160 px only)"
    assert table["mobilenet_v2"]["on_disk"] == "α 1 (96, 224 px)"


def test_one_file_families_and_keras_checksums():
    put(RESNET,
        "weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5")
    # Keras checks these two files' digests: fakes fail it, so they are not usable weights.
    assert weights_found("resnet50") == [] and weights_found("mobilenet_v3_small") == []


def test_a_one_file_family_with_a_usable_file_serves_any_size(monkeypatch: pytest.MonkeyPatch):
    from tlcore.backbones import catalogue

    put(RESNET)
    monkeypatch.delitem(catalogue._KERAS_CHECKSUMS, RESNET)  # as if Keras had no checksum for it
    assert weights_found("resnet50") == [WeightsOnDisk(None, (), any_size=True)]
    assert rows()["resnet50"]["on_disk"] == "any size"
    assert WeightsOnDisk(0.75, (), any_size=True).describe() == "α 0.75 (any size)"


def test_the_default_backbone_is_the_usual_one_when_its_weights_are_here():
    put(f"{V2}_1.0_224_no_top.h5", *THIS_SERVER)
    choice = default_backbone(160)
    assert (choice.name, choice.alpha, choice.on_disk) == ("mobilenet_v2", 1.0, True)
    assert "its ImageNet weights are on this server" in choice.reason


def test_the_default_backbone_follows_the_weights_on_this_server():
    put(*THIS_SERVER)
    choice = default_backbone(160)
    assert (choice.name, choice.alpha, choice.on_disk) == ("mobilenet_v2", 0.35, True)
    assert choice.title == "MobileNetV2 ×0.35"
    assert "MobileNetV2 ×1" in choice.reason and "are not" in choice.reason


def test_another_family_is_chosen_at_the_width_nearest_its_default():
    put("mobilenet_2_5_224_tf_no_top.h5", "mobilenet_7_5_224_tf_no_top.h5")
    choice = default_backbone(160)
    assert (choice.name, choice.alpha, choice.on_disk) == ("mobilenet", 0.75, True)


def test_without_any_weights_the_usual_default_stays_and_says_so():
    choice = default_backbone(160)
    assert (choice.name, choice.alpha, choice.on_disk) == ("mobilenet_v2", 1.0, False)
    assert "No ImageNet weights are on this server" in choice.reason


def test_backbones_json_lists_the_widths_and_sizes_on_disk(tmp_path: Path):
    cache = put(*THIS_SERVER)
    env = {**os.environ, "KERAS_HOME": str(cache.parent)}
    result = subprocess.run([sys.executable, "-m", "tlcore", "backbones", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    table = {row["name"]: row for row in json.loads(result.stdout)}
    assert table["mobilenet"]["widths_on_disk"] == [0.25, 0.75]
    assert table["mobilenet_v2"]["weights"] == [{"alpha": 0.35, "sizes": [224], "any_size": True}]
    assert table["mobilenet_v2"]["size_rule"] and not table["vgg16"]["weights_on_disk"]
