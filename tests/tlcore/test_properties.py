"""A standing defence: random and mutated inputs end in a typed error or a valid result.

Never a hang, a crash or a file outside its folder, for the image decoder, the archive
extractor, the name sanitisers and spec validation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
import typing
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imagegen import encode, random_pixels

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec, matches_type
from tlcore.data.archive import safe_extract
from tlcore.data.uploads import save_upload
from tlcore.errors import TLError
from tlcore.images import load_image
from tlcore.runs.experiments import list_experiments, load_experiment, save_experiment

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
VALID_IMAGES = [encode(random_pixels(seed, 12, 12), fmt) for seed, fmt in
                enumerate(["PNG", "JPEG", "WEBP", "BMP", "GIF"])]

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)
"""Any text a browser or a UTF-8 terminal can send, control and bidi characters included."""


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    buffer = bytearray(data)
    for position, value in flips:
        buffer[position % len(buffer)] = value
    return bytes(buffer[:cut] if cut is not None else buffer)


mutations = st.tuples(
    st.sampled_from(range(len(VALID_IMAGES))),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
    st.none() | st.integers(0, 4000),
)


@FAST
@given(mutations, st.sampled_from([None, 8, 33]))
def test_mutated_images_decode_to_valid_pixels_or_a_typed_error(mutation, size) -> None:
    index, flips, cut = mutation
    data = mutate(VALID_IMAGES[index], flips, cut)
    try:
        pixels = load_image(data, size)
    except TLError:
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    if size is not None:
        assert pixels.shape[:2] == (size, size)


@FAST
@given(st.binary(max_size=2000))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    with contextlib.suppress(TLError):
        load_image(data, 16)


member_names = st.lists(
    st.text(st.sampled_from(list("ab./\\:_ é\n")), min_size=1, max_size=12), min_size=1, max_size=6
)


@pytest.mark.filterwarnings("ignore:Duplicate name")
@FAST
@given(member_names, st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 255)), max_size=6))
def test_archives_with_odd_names_or_mutated_bytes_extract_inside_dest_or_are_refused(
        members: list[str], flips) -> None:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, name in enumerate(members):
            archive.writestr(name, VALID_IMAGES[index % len(VALID_IMAGES)])
    data = mutate(raw.getvalue(), flips, None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "archive.zip").write_bytes(data)
        dest = root / "out" / "extracted"
        try:
            safe_extract(root / "archive.zip", dest)
        except TLError:
            assert not dest.exists()
        written = [path.resolve() for path in root.rglob("*")]
        assert all(path.is_relative_to(root.resolve()) for path in written)
        assert {path.name for path in (root / "out").iterdir()} <= {"extracted"}


@FAST
@given(names)
def test_experiment_names_round_trip_or_are_refused(name: str) -> None:
    try:
        saved = save_experiment(name, RunSpec())
    except TLError:
        return
    assert load_experiment(saved.name).name == saved.name
    assert saved.name in list_experiments()


@FAST
@given(names)
def test_uploaded_archive_names_stay_inside_the_uploads_folder(name: str) -> None:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("a/1.png", VALID_IMAGES[0])
    try:
        path = save_upload(raw.getvalue(), name)
    except TLError:
        return
    assert path.parent.name == "archives" and path.is_file() and "/" not in path.name


specs = st.builds(
    RunSpec,
    dataset=st.builds(DatasetSpec, image_size=st.integers(-10, 2000), subset=st.floats(allow_nan=True),
                      val_fraction=st.floats(-1, 2), test_fraction=st.floats(-1, 2),
                      seed=st.integers(-2**40, 2**40)),
    backbone=st.builds(BackboneSpec, alpha=st.floats(allow_nan=True, allow_infinity=True)),
    train=st.builds(TrainSpec, epochs=st.integers(-5, 10_000), batch_size=st.integers(-5, 100_000),
                    learning_rate=st.floats(allow_nan=True, allow_infinity=True),
                    dropout=st.floats(-1, 2)),
)


@FAST
@given(specs)
def test_any_spec_validates_or_gives_a_typed_error_and_round_trips(spec: RunSpec) -> None:
    try:
        valid = spec.validate()
    except TLError:
        return
    assert RunSpec.from_dict(valid.to_dict()) == valid
    assert valid.key() == RunSpec.from_dict(valid.to_dict()).key()


SPEC_FIELDS = [(section, f.name) for section, part in (("dataset", DatasetSpec), ("backbone", BackboneSpec),
                                                      ("train", TrainSpec)) for f in dataclasses.fields(part)]
json_values = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True)
               | st.text(max_size=20) | st.lists(st.text(max_size=6), max_size=3))
"""Whatever a hand-edited experiment or ``run.json`` can hold in one field."""


@FAST
@given(st.sampled_from(SPEC_FIELDS), json_values)
def test_any_json_value_in_any_spec_field_validates_or_gives_a_typed_error(field, value) -> None:
    section, name = field
    data = RunSpec().to_dict()
    data[section][name] = value
    try:
        valid = RunSpec.from_dict(data).validate()
    except TLError:
        return
    for part in (valid.dataset, valid.backbone, valid.train):
        for item, hint in typing.get_type_hints(type(part)).items():
            assert matches_type(getattr(part, item), hint), (item, getattr(part, item))
    assert RunSpec.from_dict(json.loads(json.dumps(valid.to_dict()))).key() == valid.key()


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seeds_outside_what_numpy_and_tensorflow_accept_are_refused(seed: int) -> None:
    with pytest.raises(TLError, match="[Ss]eed"):
        RunSpec(dataset=DatasetSpec(seed=seed)).validate()
