"""Third round of hostile input: what an attacker tries once the known holes are closed.

Images that cost minutes of CPU, archives that fill the disk by ratio, TF Hub handles that reach
outside the allowed folders or read another user's files in the shared temporary folder, spec
files whose values have the wrong type, and paths that mean another folder to every process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from archives import dataset_entries
from imagegen import encode, random_pixels
from savedmodels import MeanColour

from tlcore.backbones import build_backbone
from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec
from tlcore.data.archive import safe_extract
from tlcore.errors import BackboneError, BadImageError, ConfigError, TLError, UploadError
from tlcore.images import MAX_JPEG_SCANS, load_image

# --- a progressive JPEG with thousands of scans ---------------------------------------------


def jpeg_with_scans(extra_scans: int, side: int = 256) -> bytes:
    """A valid progressive JPEG whose last refinement scan is repeated ``extra_scans`` times.

    libjpeg only warns about the bogus progression and decodes every scan over the whole
    image: 94 KB made this way at 2000x2000 took 12 s of CPU to decode, a few MB take hours.
    """
    data = encode(np.full((side, side, 3), 128, np.uint8), "JPEG", progressive=True, quality=90)
    last_scan = data[data.rfind(b"\xff\xda"):-2]
    return data[:-2] + last_scan * extra_scans + b"\xff\xd9"


def test_a_jpeg_with_thousands_of_scans_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    bomb = jpeg_with_scans(3000)
    path = tmp_path / "photo.jpg"
    path.write_bytes(bomb)
    for source in (bomb, path):
        started = time.monotonic()
        with pytest.raises(BadImageError, match="scans") as caught:
            load_image(source, 16)
        assert time.monotonic() - started < 1.0
        assert caught.value.hint


def test_ordinary_progressive_and_baseline_jpegs_still_decode() -> None:
    pixels = random_pixels(3, 64, 64)
    for data in (encode(pixels, "JPEG", progressive=True), encode(pixels, "JPEG"),
                 jpeg_with_scans(MAX_JPEG_SCANS - 20)):
        assert load_image(data, 16).shape == (16, 16, 3)


# --- a zip that inflates a thousand times over -------------------------------------------------


def zip_with_padding(path: Path, padding_bytes: int) -> Path:
    """A small valid dataset plus one member of zeros: it compresses about a thousand times."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in dataset_entries().items():
            archive.writestr(name, data)
        archive.writestr("daisy/padding.bmp", b"\x00" * padding_bytes)
    return path


def test_a_zip_that_inflates_a_thousand_times_its_size_is_refused(tmp_path: Path) -> None:
    archive = zip_with_padding(tmp_path / "bomb.zip", 48 * 2**20)
    assert archive.stat().st_size < 200_000  # 48 MB of disk for every such upload before
    dest = tmp_path / "out" / "extracted"
    with pytest.raises(UploadError, match="times its own size") as caught:
        safe_extract(archive, dest)
    assert "JPEG or PNG" in caught.value.hint
    assert list(dest.parent.iterdir()) == []


def test_a_small_archive_that_compresses_well_still_extracts(tmp_path: Path) -> None:
    archive = zip_with_padding(tmp_path / "flat.zip", 2**20)  # 1 MB of flat pixels: harmless
    dest = safe_extract(archive, tmp_path / "out")
    assert (dest / "daisy" / "padding.bmp").stat().st_size == 2**20


# --- TF Hub handles ---------------------------------------------------------------------------



def write_saved_model(path: Path) -> Path:
    tf.saved_model.save(MeanColour(), str(path))
    return path


@pytest.mark.parametrize("scheme", ["file://", "FILE://", "ram://"])
def test_a_hub_url_of_another_scheme_cannot_reach_outside_the_allowed_folders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    outside = write_saved_model(tmp_path / "outside" / "model")
    monkeypatch.setenv("TL_DATA_ROOT", str(tmp_path / "data"))
    spec = BackboneSpec(f"hub:{scheme}{outside}")
    with pytest.raises(BackboneError, match="http") as caught:
        spec.validate()
    assert str(outside) not in caught.value.hint
    with pytest.raises(BackboneError, match="http"):
        build_backbone(spec, 8)
    with pytest.raises(BackboneError, match="outside"):  # the plain path was always refused
        build_backbone(BackboneSpec(f"hub:{outside}"), 8)


def test_a_hub_download_cache_planted_in_the_shared_temp_folder_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    """tensorflow_hub caches downloads in $TMPDIR/tfhub_modules/sha1(url), which any user may create."""
    shared_tmp = tmp_path / "shared-tmp"
    shared_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)
    url = "https://tfhub.invalid/google/feature_vector/1"
    digest = hashlib.sha1(url.encode()).hexdigest()
    write_saved_model(shared_tmp / "tfhub_modules" / digest)

    with pytest.raises(BackboneError, match="Could not load"):
        build_backbone(BackboneSpec(f"hub:{url}"), 8)  # offline, and the planted model is ignored

    (isolated_home / "tfhub_modules").mkdir(parents=True, exist_ok=True)
    shutil.move(shared_tmp / "tfhub_modules" / digest, isolated_home / "tfhub_modules" / digest)
    assert build_backbone(BackboneSpec(f"hub:{url}"), 8).model.output_shape == (None, 3)
    assert "TFHUB_CACHE_DIR" not in os.environ  # the studio's choice does not leak out


# --- spec values of the wrong type (a hand-edited experiment, a lying run.json) -----------------

@pytest.mark.parametrize("section, field, value, needle", [
    ("train", "epochs", 2.5, "Epochs must be a whole number"),
    ("train", "batch_size", 31.9, "Batch size must be a whole number"),
    ("train", "seed", 1.5, "Seed must be a whole number"),
    ("dataset", "image_size", 100.5, "Image size must be a whole number"),
    ("train", "class_weights", "yes", "Class weights must be true or false"),
    ("train", "feature_cache", 0, "Feature cache must be true or false"),
    ("dataset", "source", 5, "Dataset source must be text"),
    ("backbone", "weights", 5, "Weights must be text"),
    ("backbone", "name", ["mobilenet_v2"], "Backbone must be text"),
    ("dataset", "data_dir", 7, "TFDS data directory must be text"),
    ("train", "augmentations", ("flip", 3), "Augmentation must be a list of names"),
])
def test_a_spec_value_of_the_wrong_type_is_a_config_error(section: str, field: str, value: object,
                                                        needle: str) -> None:
    data = RunSpec().to_dict()
    data[section][field] = value
    with pytest.raises(ConfigError, match=needle):
        RunSpec.from_dict(data).validate()


@pytest.mark.parametrize("data", [[], "spec", 5, {"dataset": []}, {"train": "fast"}, None])
def test_a_spec_that_is_not_an_object_of_objects_is_a_config_error(data: object) -> None:
    with pytest.raises(ConfigError, match="malformed"):
        RunSpec.from_dict(data)


def test_whole_numbers_written_as_floats_are_accepted_as_they_mean() -> None:
    data = RunSpec().to_dict()
    data["train"]["learning_rate"] = 1  # a float setting given as an int is fine
    assert RunSpec.from_dict(data).validate().train.learning_rate == 1


# --- relative paths mean another folder to every person and process -----------------------------

@pytest.mark.parametrize("spec", [
    RunSpec(dataset=DatasetSpec(source="folder:flowers")),
    RunSpec(dataset=DatasetSpec(source="folder:~/flowers")),
    RunSpec(dataset=DatasetSpec(source="zip:uploads/flowers.zip")),
    RunSpec(dataset=DatasetSpec(source="tfds:mnist", data_dir="prepared")),
    RunSpec(backbone=BackboneSpec(weights="weights/v2.weights.h5")),
    RunSpec(backbone=BackboneSpec(name="hub:models/tiny")),
], ids=["folder", "home", "zip", "tfds-data-dir", "weights", "hub-folder"])
def test_a_relative_path_in_a_spec_is_refused(spec: RunSpec) -> None:
    with pytest.raises(TLError, match="full path"):
        spec.validate()


def test_one_relative_folder_typed_in_two_places_is_two_datasets_not_one_reused_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, both people's ``folder:flowers`` was one spec key: the second reused the first's run."""
    from tlcore.cli import build_parser, spec_from_args

    keys = []
    for person in ("ann", "bob"):
        (tmp_path / person / "flowers").mkdir(parents=True)
        monkeypatch.chdir(tmp_path / person)
        args = build_parser().parse_args([
            "submit", "--dataset", "folder:flowers", "--backbone", "mobilenet_v2", "--alpha", "0.35",
            "--weights", "none", "--strategy", "frozen", "--epochs", "1", "--image-size", "48"])
        spec = spec_from_args(args)
        assert spec.dataset.source == f"folder:{tmp_path / person / 'flowers'}"
        keys.append(spec.key())
    assert keys[0] != keys[1]


def test_the_cli_makes_weights_and_home_relative_paths_absolute(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    spec = RunSpec(dataset=DatasetSpec(source="folder:~/flowers"),
                   backbone=BackboneSpec(weights="w.weights.h5"),
                   train=TrainSpec()).with_absolute_paths()
    assert spec.dataset.source == f"folder:{tmp_path / 'me' / 'flowers'}"
    assert spec.backbone.weights == str(tmp_path / "w.weights.h5")
    assert RunSpec().with_absolute_paths() == RunSpec()  # builtin data, imagenet weights: unchanged
    url = BackboneSpec(name="hub:https://tfhub.dev/x/1")
    assert RunSpec(backbone=url).with_absolute_paths().backbone == url


def test_a_zip_upload_and_an_absolute_folder_still_validate(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("a/1.png", encode(random_pixels(0)))
    for source in (f"zip:{archive}", f"folder:{tmp_path}"):
        RunSpec(dataset=DatasetSpec(source=source)).validate()
