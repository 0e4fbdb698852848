"""Catalogue, weight files and the Keras-applications side of tlcore.backbones.

Keras' downloader is replaced by a recorder that fails like an offline machine, so these tests
never touch the network and can check the exact file name Keras asks for.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest
from keras.src.backend import config as keras_config
from keras.src.utils import file_utils

from tlcore.backbones import (
    CATALOGUE,
    PREPROCESS_MODES,
    Preprocess,
    build_backbone,
    describe_catalogue,
    expected_weight_file,
    get_backbone_info,
    weights_on_disk,
)
from tlcore.config import BackboneSpec
from tlcore.errors import BackboneError, WeightsUnavailableError
from tlcore.paths import keras_models_dir

REQUIRED = {
    "mobilenet", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
    "efficientnet_v2_b0", "resnet50", "inception_v3", "vgg16", "densenet121", "convnext_tiny",
    "xception",
}
V2_PREFIX = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels"


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Files Keras tried to download; each attempt fails as it does offline.

    Only the transfer is replaced, so Keras' own cache lookup and checksum logic still run.
    """
    requested: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        requested.append(url.rsplit("/", 1)[-1])
        raise urllib.error.URLError("offline in tests")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    return requested


def small_size(name: str) -> int:
    return max(32, CATALOGUE[name].min_size)


def cache_file(model: keras.Model, file_name: str) -> Path:
    """Writes ``model``'s weights where Keras looks for ``file_name`` (legacy .h5, as Keras')."""
    path = keras_models_dir() / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def random_mobilenet(alpha: float, size: int, name: str = "mobilenet") -> keras.Model:
    return build_backbone(BackboneSpec(name, alpha, "none"), size).model


def assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    assert len(a.weights) == len(b.weights)
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


def test_catalogue_has_the_promised_backbones() -> None:
    assert set(CATALOGUE) >= REQUIRED
    for name, info in CATALOGUE.items():
        assert info.name == name
        assert callable(getattr(keras.applications, info.constructor))
        assert info.preprocess in PREPROCESS_MODES
        assert (info.default_alpha in info.alphas) if info.alphas else info.default_alpha is None
        assert 0 < info.top1 < 100 and info.params > 0


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.slow)
        if CATALOGUE[name].params > 20_000_000 else name
        for name in sorted(CATALOGUE)
    ],
)
def test_every_entry_builds_with_random_weights(name: str) -> None:
    info = CATALOGUE[name]
    size = small_size(name)
    resolved = build_backbone(BackboneSpec(name, None, "none"), size)
    assert resolved.model.input_shape == (None, size, size, 3)
    assert len(resolved.model.output_shape) == 4
    assert resolved.model.count_params() == info.params
    assert resolved.preprocess.mode == info.preprocess
    assert resolved.info is info and resolved.weights_loaded == "random"


@pytest.mark.parametrize(
    ("name", "alpha", "size", "file_name"),
    [
        ("mobilenet", 0.75, 160, "mobilenet_7_5_160_tf_no_top.h5"),
        ("mobilenet", 0.5, 128, "mobilenet_5_0_128_tf_no_top.h5"),
        ("mobilenet", None, 192, "mobilenet_1_0_192_tf_no_top.h5"),
        ("mobilenet", 0.25, 100, "mobilenet_2_5_224_tf_no_top.h5"),
        ("mobilenet_v2", 0.35, 224, f"{V2_PREFIX}_0.35_224_no_top.h5"),
        ("mobilenet_v2", 1.4, 96, f"{V2_PREFIX}_1.4_96_no_top.h5"),
        ("mobilenet_v2", None, 150, f"{V2_PREFIX}_1.0_224_no_top.h5"),
        ("mobilenet_v3_large", 0.75, 160, "weights_mobilenet_v3_large_224_0.75_float_no_top_v2.h5"),
        ("efficientnet_b0", None, 64, "efficientnetb0_notop.h5"),
        ("efficientnet_v2_b0", None, 64, "efficientnetv2-b0_notop.h5"),
        ("resnet50", None, 160, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        ("convnext_tiny", None, 224, "convnext_tiny_notop.h5"),
    ],
)
def test_expected_weight_file_names(
    name: str, alpha: float | None, size: int, file_name: str
) -> None:
    assert expected_weight_file(name, alpha, size) == file_name


@pytest.mark.parametrize(
    ("name", "alpha", "size"),
    [
        ("mobilenet", 0.25, 160),
        ("mobilenet", 0.25, 48),
        ("mobilenet_v2", 0.35, 96),
        ("mobilenet_v3_small", 0.75, 32),
        ("efficientnet_b0", None, 32),
        ("efficientnet_v2_b0", None, 32),
        ("densenet121", None, 32),
        pytest.param("vgg16", None, 32, marks=pytest.mark.slow),
        pytest.param("inception_v3", None, 75, marks=pytest.mark.slow),
        pytest.param("xception", None, 71, marks=pytest.mark.slow),
        pytest.param("resnet50", None, 32, marks=pytest.mark.slow),
        pytest.param("convnext_tiny", None, 32, marks=pytest.mark.slow),
    ],
)
def test_missing_weights_name_the_file_keras_asks_for(
    name: str, alpha: float | None, size: int, downloads: list[str]
) -> None:
    with pytest.raises(WeightsUnavailableError) as caught:
        build_backbone(BackboneSpec(name, alpha, "imagenet"), size)
    expected = expected_weight_file(name, alpha, size)
    assert downloads == [expected]
    assert expected in str(caught.value) and str(keras_models_dir()) in str(caught.value)


def test_weights_on_disk_follows_the_cache_and_imagenet_reads_it(downloads: list[str]) -> None:
    assert not weights_on_disk("mobilenet", 0.25, 128)
    saved = random_mobilenet(0.25, 128)
    path = cache_file(saved, "mobilenet_2_5_128_tf_no_top.h5")
    assert weights_on_disk("mobilenet", 0.25, 128)
    keras_home_before = keras_config.keras_home()

    resolved = build_backbone(BackboneSpec("mobilenet", 0.25, "imagenet"), 128)

    assert downloads == []
    assert resolved.weights_loaded == str(path) and resolved.notes == []
    assert_same_weights(resolved.model, saved)
    assert keras_config.keras_home() == keras_home_before


@pytest.mark.parametrize(
    ("name", "alpha", "cached", "size"),
    [
        ("mobilenet", 0.25, "mobilenet_2_5_224_tf_no_top.h5", 160),
        ("mobilenet_v2", 0.35, f"{V2_PREFIX}_0.35_224_no_top.h5", 96),
    ],
)
def test_cached_224_file_stands_in_for_a_missing_size(
    name: str, alpha: float, cached: str, size: int, downloads: list[str]
) -> None:
    saved = random_mobilenet(alpha, 224, name)
    path = cache_file(saved, cached)
    assert weights_on_disk(name, alpha, size)

    resolved = build_backbone(BackboneSpec(name, alpha, "imagenet"), size)

    assert downloads == []
    assert resolved.model.input_shape == (None, size, size, 3)
    assert resolved.weights_loaded == str(path)
    assert_same_weights(resolved.model, saved)
    assert any(expected_weight_file(name, alpha, size) in n and cached in n for n in resolved.notes)


def test_a_file_failing_keras_checksum_is_refused_and_kept(downloads: list[str]) -> None:
    path = keras_models_dir() / "efficientnetb0_notop.h5"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the real weights")
    assert not weights_on_disk("efficientnet_b0")
    with pytest.raises(WeightsUnavailableError, match="checksum"):
        build_backbone(BackboneSpec("efficientnet_b0", None, "imagenet"), 32)
    assert downloads == [] and path.exists()


def test_a_cached_file_keras_cannot_read_is_named(downloads: list[str]) -> None:
    path = keras_models_dir() / "mobilenet_2_5_128_tf_no_top.h5"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated download")
    with pytest.raises(BackboneError, match="mobilenet_2_5_128_tf_no_top.h5 does not hold"):
        build_backbone(BackboneSpec("mobilenet", 0.25, "imagenet"), 128)
    assert downloads == []


def test_weights_from_a_file(tmp_path: Path) -> None:
    saved = random_mobilenet(0.25, 32)
    path = tmp_path / "backbone.weights.h5"
    saved.save_weights(path)
    resolved = build_backbone(BackboneSpec("mobilenet", 0.25, str(path)), 64)
    assert resolved.weights_loaded == str(path)
    assert_same_weights(resolved.model, saved)


def test_a_weights_file_for_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v2.weights.h5"
    random_mobilenet(0.35, 32, "mobilenet_v2").save_weights(path)
    with pytest.raises(BackboneError, match="does not hold weights for MobileNet"):
        build_backbone(BackboneSpec("mobilenet", 0.25, str(path)), 32)
    with pytest.raises(BackboneError, match="does not exist"):
        build_backbone(BackboneSpec("mobilenet", 0.25, str(tmp_path / "absent.h5")), 32)


# --- weights files must lie inside the allowed folders ------------------------------------

@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A data root, TL_HOME and the Keras cache side by side, and a folder outside all three."""
    folders = {name: tmp_path / name for name in ("data", "outside")}
    for folder in folders.values():
        folder.mkdir()
    monkeypatch.setenv("TL_DATA_ROOT", str(folders["data"]))
    keras_models_dir().mkdir(parents=True)
    return {**folders, "home": Path(os.environ["TL_HOME"]), "keras": keras_models_dir()}


def saved_v1_weights(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    random_mobilenet(0.25, 32).save_weights(path)
    return path


@pytest.mark.parametrize("where", ["data", "home", "keras"])
def test_a_weights_file_in_an_allowed_folder_loads(roots: dict[str, Path], where: str) -> None:
    path = saved_v1_weights(roots[where] / "sub" / "v1.weights.h5")
    assert build_backbone(BackboneSpec("mobilenet", 0.25, str(path)), 32).weights_loaded == str(path)


def climbing(roots: dict[str, Path]) -> str:
    return f"{roots['data']}/../outside/v1.weights.h5"


def linked(roots: dict[str, Path]) -> str:
    (roots["data"] / "link.weights.h5").symlink_to(roots["outside"] / "v1.weights.h5")
    return str(roots["data"] / "link.weights.h5")


@pytest.mark.parametrize("location", [
    pytest.param(lambda roots: str(roots["outside"] / "v1.weights.h5"), id="outside"),
    pytest.param(climbing, id="dot-dot"),
    pytest.param(linked, id="symlink"),
])
def test_a_weights_file_outside_the_allowed_folders_is_refused_before_it_is_read(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch, location: Callable
) -> None:
    saved_v1_weights(roots["outside"] / "v1.weights.h5")
    spec = BackboneSpec("mobilenet", 0.25, location(roots))

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a weights file outside the allowed folders was read")

    monkeypatch.setattr(keras.Model, "load_weights", never)
    for check in (spec.validate, lambda: build_backbone(spec, 32)):
        with pytest.raises(BackboneError) as caught:
            check()
        assert "is outside the folders weights may be read from" in caught.value.message
        for allowed in (roots["data"], roots["home"].resolve(), roots["keras"].resolve()):
            assert str(allowed) in caught.value.message
        assert "TL_DATA_ROOT" in caught.value.hint


def test_a_missing_weights_file_outside_the_allowed_folders_is_not_probed(
    roots: dict[str, Path]
) -> None:
    with pytest.raises(BackboneError, match="outside the folders weights may be read from"):
        build_backbone(BackboneSpec("mobilenet", 0.25, str(roots["outside"] / "absent.h5")), 32)


@pytest.mark.parametrize(
    ("spec", "size", "message"),
    [
        (BackboneSpec("mobilenet", 0.35, "none"), 32, "0.25, 0.5, 0.75, 1.0"),
        (BackboneSpec("mobilenet_v3_small", 0.5, "none"), 32, "0.75, 1.0"),
        (BackboneSpec("resnet50", 0.5, "none"), 32, "only the MobileNet"),
        (BackboneSpec("inception_v3", None, "none"), 64, "at least 75 px"),
        (BackboneSpec("xception", None, "none"), 70, "at least 71 px"),
        (BackboneSpec("mobilenet", None, "none"), 31, "at least 32 px"),
    ],
)
def test_impossible_settings_are_refused(spec: BackboneSpec, size: int, message: str) -> None:
    with pytest.raises(BackboneError, match=message):
        build_backbone(spec, size)


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(BackboneError) as caught:
        get_backbone_info("alexnet")
    assert "mobilenet_v2" in str(caught.value) and "hub:URL_OR_FOLDER" in str(caught.value)


@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        ("tf", keras.applications.mobilenet_v2.preprocess_input),
        ("torch", keras.applications.densenet.preprocess_input),
        ("caffe", keras.applications.resnet50.preprocess_input),
        ("none", keras.applications.efficientnet.preprocess_input),
        ("unit", lambda x: x / 255.0),
    ],
)
def test_preprocess_matches_keras(
    mode: str, reference: Callable[[np.ndarray], np.ndarray]
) -> None:
    images = np.random.uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = reference(images.copy())  # some preprocess_input functions work in place
    np.testing.assert_allclose(Preprocess(mode)(images), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("mobilenet", "mobilenet"),
        ("mobilenet_v2", "mobilenet_v2"),
        ("efficientnet_b0", "efficientnet"),
        ("resnet50", "resnet50"),
        ("inception_v3", "inception_v3"),
        ("vgg16", "vgg16"),
        ("densenet121", "densenet"),
        ("xception", "xception"),
    ],
)
def test_catalogue_preprocess_is_the_keras_one(name: str, module: str) -> None:
    images = np.random.uniform(0, 255, (1, 4, 4, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(images.copy())
    np.testing.assert_allclose(
        Preprocess(CATALOGUE[name].preprocess)(images), expected, rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize(
    ("name", "constructor"),
    [
        ("mobilenet_v3_small", "MobileNetV3Small"),
        ("efficientnet_v2_b0", "EfficientNetV2B0"),
        pytest.param("convnext_tiny", "ConvNeXtTiny", marks=pytest.mark.slow),
    ],
)
def test_preprocess_replaces_the_built_in_rescaling(name: str, constructor: str) -> None:
    """These are built without their own rescaling; Preprocess in front must restore it."""
    resolved = build_backbone(BackboneSpec(name, None, "none"), 32)
    keras_default = getattr(keras.applications, constructor)(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    keras_default.set_weights(resolved.model.get_weights())
    images = np.random.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    ours = resolved.model(resolved.preprocess(images))
    np.testing.assert_allclose(ours, keras_default(images), rtol=1e-4, atol=1e-4)


def test_preprocess_survives_a_safe_mode_round_trip(tmp_path: Path) -> None:
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, Preprocess("caffe")(inputs))
    model.save(tmp_path / "pre.keras")
    loaded = keras.models.load_model(tmp_path / "pre.keras", safe_mode=True)
    images = np.random.uniform(0, 255, (1, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(loaded(images), model(images))
    assert loaded.layers[-1].get_config()["mode"] == "caffe"


def test_unknown_preprocess_mode() -> None:
    with pytest.raises(BackboneError, match="tf, torch, caffe, unit, none"):
        Preprocess("inception")


def test_describe_catalogue_rows() -> None:
    rows = describe_catalogue()
    assert [row["name"] for row in rows] == list(CATALOGUE)
    assert {"name", "title", "params", "top1", "default_size", "alphas", "weights_on_disk"} <= set(
        rows[0]
    )
    assert not any(row["weights_on_disk"] for row in rows)
    # MobileNetV2 files carry no Keras checksum: the right name at the default size is enough.
    cache = keras_models_dir()
    cache.mkdir(parents=True)
    (cache / expected_weight_file("mobilenet_v2", None, 224)).write_bytes(b"h5")
    by_name = {row["name"]: row for row in describe_catalogue()}
    assert by_name["mobilenet_v2"]["weights_on_disk"]
    assert not by_name["mobilenet"]["weights_on_disk"]


def test_real_imagenet_weights_from_the_shared_assets(assets: Path, downloads: list[str]) -> None:
    cache = keras_models_dir()
    cache.mkdir(parents=True)
    for source in (assets / "keras-weights").iterdir():
        shutil.copy(source, cache / source.name)
    assert weights_on_disk("mobilenet_v2", 0.35, 224) and weights_on_disk("mobilenet", 0.75, 160)

    v2 = build_backbone(BackboneSpec("mobilenet_v2", 0.35, "imagenet"), 224)
    v1 = build_backbone(BackboneSpec("mobilenet", 0.75, "imagenet"), 160)

    assert downloads == []
    assert v2.weights_loaded == str(cache / expected_weight_file("mobilenet_v2", 0.35, 224))
    assert v1.weights_loaded == str(cache / "mobilenet_7_5_224_tf_no_top.h5")
    assert "mobilenet_7_5_160_tf_no_top.h5" in v1.notes[0]
    for pretrained, alpha in ((v2, 0.35), (v1, 0.75)):
        size = pretrained.model.input_shape[1]
        random = build_backbone(BackboneSpec(pretrained.info.name, alpha, "none"), size)
        assert not np.allclose(pretrained.model.weights[0].numpy(), random.model.weights[0].numpy())
