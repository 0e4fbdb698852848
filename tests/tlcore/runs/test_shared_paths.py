"""Which paths a run sent to a Ray cluster may name (``TL_SHARED_PATHS``), checked without a cluster.

``check_reachable`` only compares paths, so most specs here name folders that do not exist.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from folders import add_images
from specs import tiny_spec

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec
from tlcore.errors import ConfigError
from tlcore.records import RunStatus
from tlcore.runs import jobs
from tlcore.runs.shared_paths import check_reachable, shared_roots
from tlcore.runs.store import Claimant, RunStore


@pytest.fixture(autouse=True)
def no_artifact_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run folders on the shared ``TL_HOME``, whatever the environment of whoever runs the tests."""
    monkeypatch.delenv("TL_ARTIFACTS_URL", raising=False)


def with_dataset(source: str, data_dir: str | None = None) -> RunSpec:
    tiny = tiny_spec()
    return replace(tiny, dataset=replace(tiny.dataset, source=source, data_dir=data_dir))


def with_backbone(name: str = "mobilenet_v2", weights: str = "none") -> RunSpec:
    return replace(tiny_spec(), backbone=BackboneSpec(name=name, alpha=0.35, weights=weights))


def refusal(spec: RunSpec) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        check_reachable(spec)
    return refused.value


def test_tl_home_is_shared_when_run_folders_are_not_mirrored(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TL_SHARED_PATHS", raising=False)
    assert shared_roots() == [isolated_home.resolve()]


def test_shared_paths_lists_every_folder_before_tl_home(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "nfs" / "data", tmp_path / "nfs" / "weights"
    monkeypatch.setenv("TL_SHARED_PATHS", f"{first}{os.pathsep}{second}{os.pathsep}")
    assert shared_roots() == [first.resolve(), second.resolve(), isolated_home.resolve()]


def test_a_folder_dataset_outside_every_shared_folder_is_refused_with_the_setting_to_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_SHARED_PATHS", str(tmp_path / "nfs"))
    outside = tmp_path / "only-here" / "pets"
    error = refusal(with_dataset(f"folder:{outside}"))
    assert str(outside.resolve()) in error.message and "dataset" in error.message
    assert "TL_SHARED_PATHS" in error.hint


def test_a_folder_dataset_under_tl_home_or_a_shared_folder_is_accepted(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_SHARED_PATHS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    check_reachable(with_dataset(f"folder:{isolated_home / 'collected' / 'pets'}"))
    check_reachable(with_dataset(f"folder:{tmp_path / 'b' / 'pets'}"))
    check_reachable(with_dataset(f"zip:{tmp_path / 'a' / 'pets.zip'}"))


def test_a_path_that_leaves_a_shared_folder_by_dotdot_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_SHARED_PATHS", str(tmp_path / "nfs"))
    error = refusal(with_dataset(f"folder:{tmp_path / 'nfs' / '..' / 'pets'}"))
    assert str((tmp_path / "pets").resolve()) in error.message


@pytest.mark.parametrize("spec_of, what", [
    (lambda outside: with_backbone(weights=str(outside / "weights.h5")), "weights file"),
    (lambda outside: with_dataset("tfds:mnist", data_dir=str(outside / "tfds")), "TFDS data directory"),
    (lambda outside: with_backbone(name=f"hub:{outside / 'saved'}"), "backbone folder"),
    (lambda outside: with_backbone(name=f"kerashub:{outside / 'preset'}"), "backbone folder"),
])
def test_other_files_outside_every_shared_folder_are_refused(
    spec_of: Callable[[Path], RunSpec], what: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TL_SHARED_PATHS", raising=False)
    outside = tmp_path / "only-here"
    error = refusal(spec_of(outside))
    assert what in error.message and str(outside.resolve()) in error.message


@pytest.mark.parametrize("spec", [
    with_dataset("builtin:shapes"),
    with_dataset("tfds:mnist"),
    with_backbone(weights="imagenet"),
    with_backbone(name="hub:https://tfhub.dev/google/imagenet/mobilenet_v2_035_96/feature_vector/5"),
    with_backbone(name="kerashub:efficientnet_b0_ra_imagenet", weights="imagenet"),
])
def test_specs_naming_no_local_path_are_never_refused(spec: RunSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TL_SHARED_PATHS", "/nowhere-shared")
    check_reachable(spec)


def folder_spec(tmp_path: Path) -> tuple[Path, RunSpec]:
    """A small folder dataset under ``tmp_path`` (shared with no cluster) and a spec naming it."""
    folder = tmp_path / "x"
    for name in ("cats", "dogs"):
        add_images(folder / name, 20)
    return folder, replace(tiny_spec(), dataset=DatasetSpec(source=f"folder:{folder}", image_size=48))


def test_check_spec_refuses_an_unshared_folder_only_when_runs_go_to_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, spec = folder_spec(tmp_path)
    monkeypatch.delenv("TL_SHARED_PATHS", raising=False)
    monkeypatch.delenv("TL_JOBS", raising=False)
    assert jobs.check_spec(spec) == spec
    monkeypatch.setenv("TL_JOBS", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="not on a path the Ray cluster's nodes share") as refused:
        jobs.check_spec(spec)
    assert str(folder.resolve()) in refused.value.message
    monkeypatch.setenv("TL_SHARED_PATHS", str(tmp_path))
    assert jobs.check_spec(spec) == spec


def test_tfds_data_prepared_under_tl_home_is_refused_when_homes_are_not_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = with_dataset("tfds:mnist")
    monkeypatch.setenv("TL_SHARED_PATHS", str(tmp_path / "shared"))
    monkeypatch.setenv("TL_ARTIFACTS_URL", (tmp_path / "mirror").as_uri())  # each node its own TL_HOME
    with pytest.raises(ConfigError, match="TFDS data directory"):
        check_reachable(spec)
    check_reachable(replace(spec, dataset=replace(spec.dataset, data_dir=str(tmp_path / "shared" / "tfds"))))


def test_resume_onto_a_cluster_refuses_data_its_nodes_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore()
    run, _ = store.create_run(folder_spec(tmp_path)[1])
    store.claim(run.id, Claimant.current())
    store.finish(run.id, RunStatus.FAILED, error="worker lost")
    monkeypatch.setenv("TL_JOBS", "http://127.0.0.1:9")
    monkeypatch.delenv("TL_SHARED_PATHS", raising=False)
    with pytest.raises(ConfigError, match="not on a path the Ray cluster's nodes share"):
        jobs.resume(run.id, store)
    assert store.get(run.id).status is RunStatus.FAILED, "nothing was queued"
