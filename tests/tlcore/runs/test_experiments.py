import dataclasses
import json

import pytest
from specs import tiny_spec

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec
from tlcore.errors import BackboneError, ConfigError
from tlcore.runs.checks import spec_problems, spec_warnings
from tlcore.runs.experiments import (
    classic_experiment,
    delete_experiment,
    experiments_dir,
    list_experiments,
    load_experiment,
    save_experiment,
)


def test_save_load_list_delete_round_trip():
    saved = save_experiment("  shapes   frozen ", tiny_spec(epochs=3))
    assert saved.name == "shapes frozen"
    assert load_experiment("shapes frozen") == saved
    assert load_experiment("shapes frozen").key() == tiny_spec(epochs=3).key()
    save_experiment("second", tiny_spec())
    assert list_experiments() == ["second", "shapes frozen"]  # newest first
    delete_experiment("shapes frozen")
    assert list_experiments() == ["second"]


def test_saving_again_replaces_and_similar_names_do_not_collide():
    save_experiment("a b", tiny_spec(epochs=1))
    save_experiment("a-b", tiny_spec(epochs=2))
    save_experiment("a b", tiny_spec(epochs=3))
    assert load_experiment("a b").train.epochs == 3
    assert load_experiment("a-b").train.epochs == 2
    assert len(list(experiments_dir().glob("*.json"))) == 2


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs/path", "..", "a/../../b", "nul\x00byte"])
def test_names_never_escape_the_experiments_folder(name):
    save_experiment(name, tiny_spec())
    files = list(experiments_dir().glob("*.json"))
    assert len(files) == 1 and files[0].parent == experiments_dir()
    assert json.loads(files[0].read_text())["name"] == name
    assert load_experiment(name).name == name


@pytest.mark.parametrize("name", ["", "   ", "x" * 81])
def test_bad_names_are_refused(name):
    with pytest.raises(ConfigError):
        save_experiment(name, tiny_spec())


def test_invalid_specs_are_not_saved_and_missing_ones_are_explained():
    bad = RunSpec(train=TrainSpec(strategy="frozen_then_finetune", fine_tune_epochs=0))
    with pytest.raises(ConfigError, match="fine-tune epoch"):
        save_experiment("bad", bad)
    with pytest.raises(ConfigError, match="no saved experiment"):
        load_experiment("missing")
    experiments_dir().joinpath("broken-00000000.json").write_text("{not json")
    assert list_experiments() == []


def test_classic_experiment_shares_data_backbone_and_budget():
    base = tiny_spec(epochs=5)
    runs = classic_experiment(base)
    # In queue order: the pretrained runs answer within seconds, scratch trains last.
    assert [r.train.strategy for r in runs] == ["frozen", "frozen_then_finetune", "scratch"]
    assert [r.name for r in runs] == [f"classic · {s}" for s in ("frozen", "frozen_then_finetune", "scratch")]
    assert {r.dataset for r in runs} == {base.dataset}
    assert {r.backbone.name for r in runs} == {"mobilenet_v2"} and {r.backbone.alpha for r in runs} == {0.35}
    assert {r.train.total_epochs for r in runs} == {5}
    assert runs[2].backbone.weights == "none"
    assert (runs[1].train.epochs, runs[1].train.fine_tune_epochs) == (3, 2)
    for run in runs:
        run.validate()


def test_classic_experiment_budget_is_at_least_two_epochs():
    assert {r.train.total_epochs for r in classic_experiment(tiny_spec(epochs=1))} == {2}


def test_spec_problems_cover_validation_and_backbone_limits(tmp_path):
    assert spec_problems(tiny_spec()) == []
    problems = spec_problems(RunSpec(
        dataset=DatasetSpec(image_size=48),
        backbone=BackboneSpec(name="inception_v3", alpha=0.5, weights=str(tmp_path / "nope.h5")),
        train=TrainSpec(epochs=0),
    ))
    messages = " ".join(p.message for p in problems)
    assert "Epochs must be" in messages
    assert "no width multiplier" in messages
    assert "at least 75 px" in messages
    assert "does not exist" in messages
    assert any(isinstance(p, BackboneError) for p in problems)
    assert "Unknown backbone" in spec_problems(RunSpec(backbone=BackboneSpec(name="nope")))[0].message
    assert spec_problems(RunSpec(backbone=BackboneSpec(name=f"hub:{tmp_path / 'model'}"))) == []
    [outside] = spec_problems(RunSpec(backbone=BackboneSpec(name="hub:/some/folder")))
    assert isinstance(outside, BackboneError)
    assert "outside the folders weights may be read from" in outside.message


@pytest.mark.parametrize("epochs", [1, 0])
def test_a_weights_path_outside_the_allowed_folders_is_refused_without_saying_if_it_exists(epochs):
    for location in ("/etc/passwd", "/no/such/file.h5"):
        spec = RunSpec(backbone=BackboneSpec(weights=location), train=TrainSpec(epochs=epochs))
        weights_problems = [p for p in spec_problems(spec) if "Epochs" not in p.message]
        assert len(weights_problems) == 1, weights_problems
        assert "outside the folders weights may be read from" in weights_problems[0].message
        assert "does not exist" not in weights_problems[0].message


def test_spec_warnings_say_when_imagenet_weights_are_missing():
    assert any("not on this server" in w for w in spec_warnings(RunSpec()))
    assert spec_warnings(tiny_spec("scratch")) == []


def test_spec_warnings_say_a_frozen_random_backbone_has_nothing_to_transfer():
    assert any("nothing to transfer" in w for w in spec_warnings(tiny_spec("frozen")))
    assert not any("nothing to transfer" in w for w in spec_warnings(tiny_spec("scratch")))


def test_too_many_blocks_or_blocks_of_a_hub_model_are_refused_before_queueing():
    spec = tiny_spec("finetune", fine_tune_blocks=19)  # MobileNetV2 has 18, stem included
    (problem,) = spec_problems(spec)
    assert "MobileNetV2 has 18 blocks (stem to block_16)" in problem.message
    assert spec_problems(tiny_spec("finetune", fine_tune_blocks=18)) == []
    assert spec_problems(tiny_spec("frozen", fine_tune_blocks=19)) == []  # nothing fine-tunes
    hub = dataclasses.replace(spec, backbone=BackboneSpec("hub:https://tfhub.dev/x/y/1"))
    assert any("TF Hub models declare no blocks" in p.message for p in spec_problems(hub))
