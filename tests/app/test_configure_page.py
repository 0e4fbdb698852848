import pytest
from apptools import class_zip, open_app, texts

from tlcore.config import DatasetSpec, TrainSpec, setting
from tlcore.runs.experiments import list_experiments, load_experiment


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
    assert "Using the uploaded archive" in texts(at)
    at.button(key="configure.preview").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "2 classes, 16 images" in texts(at)
    assert {"bar", "square"} <= {m.value.strip("*") for m in at.markdown}
    assert at.get("imgs") or at.get("image")
    assert at.get("plotly_chart")
    assert "preview the dataset" not in texts(at)  # the estimate now uses the real size


def test_a_folder_outside_the_data_root_is_refused_by_the_engine(tmp_path):
    at = open_app("pages/configure.py")
    at.radio(key="configure.kind").set_value("folder").run()
    at.text_input(key="configure.folder").set_value("/etc").run()
    at.button(key="configure.preview").click().run()
    assert not at.exception
    assert any("outside the folders datasets may be read from" in e.value for e in at.error)


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
        bound = setting(spec_class, name).bound
        widget = at.number_input(key=key)
        assert (widget.min, widget.max) == (bound.form_min, bound.form_max), key
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
