import pytest
from apptools import class_zip, open_app, texts
from specs import tiny_spec

from tlcore.config import DatasetSpec, TrainSpec, setting
from tlcore.paths import keras_models_dir
from tlcore.runs.experiments import list_experiments, load_experiment, save_experiment
from ui.forms import allowed


def test_defaults_validate_and_save_as_the_current_experiment():
    at = open_app("pages/configure.py")
    assert not at.exception and not at.error
    assert at.button(key="configure.save").disabled  # no name yet
    assert "Time per epoch (estimate)" in [m.label for m in at.metric]
    at.radio(key="configure.weights").set_value("none")
    at.number_input(key="configure.epochs").set_value(2)
    at.text_input(key="configure.name").set_value("my first")
    at.run()
    assert not at.button(key="configure.save").disabled
    at.button(key="configure.save").click().run()
    assert not at.exception and not at.error
    assert list_experiments() == ["my first"]
    saved = load_experiment("my first")
    assert saved.train.epochs == 2 and saved.backbone.weights == "none" and saved.name == "my first"
    assert at.session_state["current_experiment"] == "my first"
    assert "Saved “my first”" in texts(at)

    at.switch_page("pages/train.py").run()
    assert at.selectbox(key="train.experiment").value == "my first"


def test_an_impossible_setting_is_shown_inline_and_blocks_saving():
    at = open_app("pages/configure.py")
    at.radio(key="configure.strategy").set_value("frozen_then_finetune").run()
    assert not at.number_input(key="configure.ft_epochs").disabled
    at.number_input(key="configure.ft_epochs").set_value(0)
    at.text_input(key="configure.name").set_value("broken")
    at.run()
    assert not at.exception
    assert any("needs at least one fine-tune epoch" in e.value for e in at.error)
    assert any("fine-tune epochs to 1 or more" in i.value for i in at.info)
    assert at.button(key="configure.save").disabled
    assert list_experiments() == []


def test_backbone_limits_are_checked_before_training():
    at = open_app("pages/configure.py")
    at.selectbox(key="configure.backbone").set_value("inception_v3")
    at.number_input(key="configure.image_size").set_value(48)
    at.run()
    assert any("at least 75 px" in e.value for e in at.error)


def test_a_zip_upload_becomes_the_dataset_and_previews():
    at = open_app("pages/configure.py")
    at.radio(key="configure.kind").set_value("zip").run()
    assert "Upload a zip to use it." in texts(at)
    at.file_uploader(key="configure.zip").set_value(("toys.zip", class_zip(), "application/zip"))
    at.number_input(key="configure.image_size").set_value(32)
    at.run()
    assert not at.exception and not at.error
    assert "Using the uploaded archive **toys.zip**." in texts(at)
    assert "uploads/archives" not in texts(at), "no server path is shown"
    at.button(key="configure.preview").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "2 classes, 16 images" in texts(at)
    assert {"bar", "square"} <= {m.value.strip("*") for m in at.markdown}
    assert at.get("imgs") or at.get("image")
    assert at.get("plotly_chart")
    assert "preview the dataset" not in texts(at)  # the estimate now uses the real size


def test_a_folder_outside_the_data_root_is_refused_as_it_is_typed(tmp_path):
    at = open_app("pages/configure.py")
    at.radio(key="configure.kind").set_value("folder").run()
    at.text_input(key="configure.folder").set_value("/etc").run()
    assert not at.exception
    assert any("outside the folders datasets may be read from" in e.value for e in at.error)
    assert any("TL_DATA_ROOT" in i.value for i in at.info)
    assert at.button(key="configure.preview").disabled


def test_a_missing_folder_is_reported_while_typing_and_blocks_saving(tmp_path):
    at = open_app("pages/configure.py")
    at.radio(key="configure.kind").set_value("folder").run()
    at.text_input(key="configure.folder").set_value(str(tmp_path / "no-such-photos"))
    at.text_input(key="configure.name").set_value("typo")
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert sum("does not exist" in e for e in errors) == 1, errors
    hints = "\n".join(i.value for i in at.info)
    assert "Upload a zip" in hints and "zip:" not in texts(at), "the app points to the upload, not CLI syntax"
    assert at.button(key="configure.save").disabled and at.button(key="configure.preview").disabled
    assert "Fix the settings marked above to save." in texts(at)

    (tmp_path / "photos" / "cats").mkdir(parents=True)
    at.text_input(key="configure.folder").set_value(str(tmp_path / "photos")).run()
    assert not any("does not exist" in e.value for e in at.error)
    assert not at.button(key="configure.save").disabled


def test_epochs_outside_the_allowed_range_say_what_is_allowed():
    at = open_app("pages/configure.py")
    at.number_input(key="configure.epochs").set_value(0)
    at.text_input(key="configure.name").set_value("zero")
    at.run()
    assert not at.exception
    assert "Epochs must be between 1 and 1000, got 0." in [e.value for e in at.error]
    assert at.button(key="configure.save").disabled
    at.number_input(key="configure.epochs").set_value(3).run()
    assert not at.error and not at.button(key="configure.save").disabled


def test_the_starting_backbone_is_one_whose_weights_are_on_this_server():
    cache = keras_models_dir()
    cache.mkdir(parents=True)
    for name in ("mobilenet_2_5_224_tf_no_top.h5", "mobilenet_7_5_224_tf_no_top.h5",
                 "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"):
        (cache / name).write_bytes(b"fake h5")
    at = open_app("pages/configure.py")
    assert not at.exception
    assert at.selectbox(key="configure.backbone").value == "mobilenet_v2"
    assert at.selectbox(key="configure.alpha.mobilenet_v2").value == 0.35
    note = "MobileNetV2 ×0.35, because its ImageNet weights are on this server"
    assert any(note in i.value for i in at.info)
    assert at.radio(key="configure.kind").value == "builtin"
    assert not at.warning, "no warning about missing weights"


def test_without_weights_on_disk_the_start_says_so():
    at = open_app("pages/configure.py")
    assert any("No ImageNet weights are on this server" in i.value for i in at.info)
    save_experiment("mine", tiny_spec())
    assert not any("No ImageNet weights" in i.value for i in open_app("pages/configure.py").info), \
        "a saved experiment is shown as it is, without the note"


NUMBER_INPUTS = {
    "configure.image_size": (DatasetSpec, "image_size"), "configure.seed": (DatasetSpec, "seed"),
    "configure.epochs": (TrainSpec, "epochs"), "configure.ft_epochs": (TrainSpec, "fine_tune_epochs"),
    "configure.ft_layers": (TrainSpec, "fine_tune_layers"),
    "configure.patience": (TrainSpec, "early_stopping_patience"),
    "configure.views": (TrainSpec, "augment_views"),
}
SLIDERS = {
    "configure.subset": (DatasetSpec, "subset"), "configure.val": (DatasetSpec, "val_fraction"),
    "configure.test": (DatasetSpec, "test_fraction"),
    "configure.ft_fraction": (TrainSpec, "fine_tune_fraction"),
    "configure.smoothing": (TrainSpec, "label_smoothing"), "configure.dropout": (TrainSpec, "dropout"),
}


def test_widget_limits_and_options_are_the_bounds_and_choices_of_tlcore_config():
    at = open_app("pages/configure.py")
    for key, (spec_class, name) in NUMBER_INPUTS.items():
        widget = at.number_input(key=key)
        # No limits in the browser (it would only turn a value red): the range is said in the
        # field's help, and a value outside it is explained under the field.
        assert allowed(spec_class, name) in widget.help, key
        assert setting(spec_class, name).bound.describe() in allowed(spec_class, name)
    for key, (spec_class, name) in SLIDERS.items():
        bound = setting(spec_class, name).bound
        widget = at.slider(key=key)
        assert (widget.min, widget.max, widget.step) == pytest.approx(
            (bound.form_min, bound.form_max, bound.step)), key
        assert all(bound.contains(v) for v in (widget.min, widget.max))
    rates = setting(TrainSpec, "learning_rate").bound.presets
    assert [float(v) for v in at.select_slider(key="configure.lr").options] == sorted(rates)
    sizes = setting(TrainSpec, "batch_size").bound.presets
    assert [int(v) for v in at.selectbox(key="configure.batch").options] == sorted(sizes)
    assert tuple(at.selectbox(key="configure.optimizer").options) == setting(TrainSpec, "optimizer").choices
    augmentations = setting(TrainSpec, "augmentations").choices
    assert tuple(at.multiselect(key="configure.augment").options) == augmentations
    strategies = setting(TrainSpec, "strategy").choices
    assert [o.split(" ")[0] for o in at.radio(key="configure.strategy").options] == list(strategies)


def kerashub_presets_table(at):
    """The Backbone catalogue's table of keras-hub presets (the one with a download column)."""
    (table,) = [frame.value for frame in at.dataframe if "download" in frame.value.columns]
    return table.set_index("name")


def test_the_kerashub_toggle_shows_the_preset_picker_and_which_presets_need_a_download(tmp_path, monkeypatch):
    from kerashub_presets import offline_kagglehub

    from tlcore.backbones import KERAS_HUB_PRESETS

    offline_kagglehub(monkeypatch, tmp_path / "kagglehub", tmp_path)
    at = open_app("pages/configure.py")
    assert "configure.kerashub" not in [box.key for box in at.selectbox]
    at.toggle(key="configure.use_kerashub").set_value(True).run()
    assert not at.exception
    picker = at.selectbox(key="configure.kerashub")
    titles = [preset.title for preset in KERAS_HUB_PRESETS.values()]
    assert list(picker.options) == [*titles, "Another name or a folder"]
    assert picker.value == next(iter(KERAS_HUB_PRESETS))
    assert "not on this server: it needs a download" in texts(at)
    table = kerashub_presets_table(at)
    assert list(table.index) == [f"kerashub:{name}" for name in KERAS_HUB_PRESETS]
    assert table["download"].str.startswith("needs a download (about ").all()
    picker.set_value("other").run()
    assert at.text_input(key="configure.kerashub_other").value == ""


def test_a_preset_in_kagglehubs_cache_is_shown_as_on_disk(tmp_path, monkeypatch):
    from kerashub_presets import offline_kagglehub, put_in_kagglehub_cache, tiny_resnet

    from tlcore.backbones import KERAS_HUB_PRESETS

    offline_kagglehub(monkeypatch, tmp_path / "kagglehub", tmp_path)
    put_in_kagglehub_cache(tiny_resnet(tmp_path / "resnet"), KERAS_HUB_PRESETS["resnet_18_imagenet"].handle)
    at = open_app("pages/configure.py")
    at.toggle(key="configure.use_kerashub").set_value(True).run()
    at.selectbox(key="configure.kerashub").set_value("resnet_18_imagenet").run()
    assert not at.exception
    table = kerashub_presets_table(at)
    assert table.loc["kerashub:resnet_18_imagenet", "download"] == "cached: loads offline"
    assert table.loc["kerashub:resnet_50_imagenet", "download"].startswith("needs a download")
    assert "ResNet-18: 11.2 M parameters, trained at 224 px, in kagglehub's cache: loads offline" in texts(at)


def test_the_preview_warns_when_a_finished_runs_audit_found_copies_in_this_data(tmp_path):
    """The warning comes from the newest stored audit of a run on these very files, and names it."""
    import numpy as np
    from imagegen import write_class_folders

    from tlcore.config import RunSpec
    from tlcore.data.bundle import Split
    from tlcore.records import RunStatus
    from tlcore.report.audit import DataAudit, LeakCount
    from tlcore.runs.auditing import save_audit
    from tlcore.runs.data_identity import DataIdentity
    from tlcore.runs.store import RunStore
    from ui import glue

    write_class_folders(tmp_path / "photos", {"cats": 10, "dogs": 10})
    dataset = DatasetSpec(source=f"folder:{tmp_path / 'photos'}", image_size=32)
    at = open_app("pages/configure.py")
    at.radio(key="configure.kind").set_value("folder").run()
    at.text_input(key="configure.folder").set_value(str(tmp_path / "photos"))
    at.number_input(key="configure.image_size").set_value(32)
    at.run()
    at.button(key="configure.preview").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "2 classes, 20 images" in texts(at)
    assert not [w for w in at.warning if "data audit" in w.value], "no audit yet: nothing to warn about"

    spec = RunSpec(dataset, train=TrainSpec(strategy="frozen"))
    fingerprint = DataIdentity.of(spec).fingerprint
    store = RunStore()
    run, _ = store.create_run(spec, data_fingerprint=fingerprint)
    store.finish(run.id, RunStatus.FINISHED)
    audit = DataAudit(("cats", "dogs"), {"train": 14, "val": 3, "test": 3}, 0.9999, 0.9,
                      (LeakCount("test", "train", 2, 1), LeakCount("val", "train", 0, 0)), (), 0, 0, (), (),
                      "PCA", run_id=run.id, fingerprint=fingerprint)
    nothing = Split(np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64), [])
    save_audit(store, run.id, audit, {"test": nothing})
    at.run()
    assert not at.exception
    [warning] = [w for w in at.warning if "data audit" in w.value]
    assert warning.icon == ":material/policy:"
    assert warning.value == (f"{glue.literal(audit.warnings()[0])} (the data audit of run {run.id}; "
                             "see Compare & Classify)")
    assert "3 test images have a near" in warning.value and "the test score is optimistic" in warning.value
