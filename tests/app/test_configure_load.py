"""Loading a saved experiment on Configure sets every widget from it (issue 15, "Load does not load").

AppTest reads widget values from the server's session, but a browser keeps showing (and sends
back) its own value of a widget it already shows, unless the server tells it the new value
(``set_value`` in the widget's message). :class:`BrowserView` keeps values the way a browser
does, so these tests see what a person would see, and what the next edit would send.
"""

from __future__ import annotations

from typing import Any

from apptools import open_app
from streamlit.testing.v1 import AppTest

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec
from tlcore.runs.experiments import load_experiment, save_experiment

KINDS = ("radio", "selectbox", "text_input", "number_input", "slider", "select_slider", "toggle",
         "multiselect")


class BrowserView:
    """An AppTest page whose widget values live on as a browser keeps them."""

    def __init__(self, at: AppTest) -> None:
        self.at = at
        self.shown: dict[str, tuple[str, Any]] = {}
        self._observe()

    def widgets(self) -> dict[str, Any]:
        return {w.key: w for kind in KINDS for w in getattr(self.at, kind)
                if w.key and w.key.startswith("configure.")}

    def _observe(self) -> None:
        """After a run: a widget shown before with the same id keeps its value unless told otherwise."""
        shown = {}
        for key, widget in self.widgets().items():
            before = self.shown.get(key)
            kept = before is not None and before[0] == widget.id and not widget.proto.set_value
            shown[key] = before if kept else (widget.id, widget.value)
        self.shown = shown

    def value(self, key: str) -> Any:
        return self.shown[key][1]

    def set(self, key: str, value: Any) -> BrowserView:
        """A person changes one widget; the browser sends it with every other value it shows."""
        widget = self.widgets()[key]
        self.shown[key] = (widget.id, value)
        return self.run()

    def click(self, key: str) -> BrowserView:
        self.at.button(key=key).click()
        return self.run()

    def run(self) -> BrowserView:
        for key, widget in self.widgets().items():
            if self.shown[key][1] != widget.value:
                widget.set_value(self.shown[key][1])
        self.at.run()
        assert not self.at.exception, self.at.exception
        self._observe()
        return self


def folder_spec(root) -> RunSpec:
    return RunSpec(
        DatasetSpec(source=f"folder:{root}", image_size=64, subset=0.5, seed=7),
        BackboneSpec(name="mobilenet", alpha=0.25, weights="none"),
        TrainSpec(strategy="frozen_then_finetune", epochs=3, fine_tune_epochs=2, batch_size=16,
                  dropout=0.3, optimizer="sgd"),
    )


def builtin_spec() -> RunSpec:
    return RunSpec(
        DatasetSpec(source="builtin:shapes", image_size=96, subset=1.0, seed=11),
        BackboneSpec(name="mobilenet_v2", alpha=0.35, weights="none"),
        TrainSpec(strategy="frozen_then_finetune", epochs=4, fine_tune_epochs=5, batch_size=64,
                  dropout=0.1, optimizer="adam", learning_rate=3e-4),
    )


def expected(spec: RunSpec, name: str) -> dict[str, Any]:
    """What every form widget must show for ``spec`` saved as ``name``."""
    d, b, t = spec.dataset, spec.backbone, spec.train
    values = {
        "kind": d.kind, "name": name, "image_size": d.image_size, "subset": d.subset, "val": d.val_fraction,
        "test": d.test_fraction, "seed": d.seed, "use_hub": False, "backbone": b.name,
        f"alpha.{b.name}": b.alpha, "weights": b.weights, "strategy": t.strategy, "epochs": t.epochs,
        "ft_epochs": t.fine_tune_epochs, "ft_layers": t.fine_tune_layers, "ft_fraction": t.fine_tune_fraction,
        "lr": t.learning_rate, "ft_lr": t.fine_tune_learning_rate, "batch": t.batch_size,
        "optimizer": t.optimizer, "smoothing": t.label_smoothing, "dropout": t.dropout,
        "patience": t.early_stopping_patience, "class_weights": t.class_weights,
        "augment": list(t.augmentations), "feature_cache": t.feature_cache, "views": t.augment_views,
    }
    return {f"configure.{key}": value for key, value in values.items()}


def shows(page: BrowserView, spec: RunSpec, name: str) -> dict[str, tuple[Any, Any]]:
    """Widgets that do not show ``spec`` (shown, wanted); empty when the form is right."""
    wrong = {}
    for key, wanted in expected(spec, name).items():
        value = page.value(key)
        value = value.split(" ")[0] if key == "configure.strategy" else value
        if value != wanted:
            wrong[key] = (value, wanted)
    return wrong


def load(page: BrowserView, name: str) -> None:
    page.set("configure.start", name).click("configure.load")


def test_loading_one_experiment_after_another_shows_every_setting_of_the_second(tmp_path):
    folder = tmp_path / "photos"
    for label in ("cats", "dogs"):
        (folder / label).mkdir(parents=True)
    save_experiment("A folder", folder_spec(folder))
    save_experiment("B builtin", builtin_spec())
    page = BrowserView(open_app("pages/configure.py"))

    load(page, "A folder")
    assert shows(page, folder_spec(folder), "A folder") == {}
    assert page.value("configure.folder") == str(folder)

    load(page, "B builtin")
    assert shows(page, builtin_spec(), "B builtin") == {}
    assert page.value("configure.builtin") == "shapes"
    assert page.at.session_state["current_experiment"] == "B builtin"

    # The next edit sends what the browser shows: B's settings, with the one change.
    page.set("configure.epochs", 6).click("configure.save")
    assert not page.at.error, [e.value for e in page.at.error]
    saved = load_experiment("B builtin")
    assert saved.dataset == builtin_spec().dataset and saved.backbone == builtin_spec().backbone
    assert (saved.train.epochs, saved.train.fine_tune_epochs) == (6, 5)
    untouched = load_experiment("A folder")
    assert (untouched.dataset, untouched.train) == (folder_spec(folder).dataset, folder_spec(folder).train)


def test_edits_survive_a_visit_to_another_page():
    page = BrowserView(open_app("pages/configure.py"))
    page.set("configure.epochs", 7).set("configure.name", "kept")
    page.at.switch_page("pages/train.py").run()
    page.at.switch_page("pages/configure.py")
    page.run()
    assert (page.value("configure.epochs"), page.value("configure.name")) == (7, "kept")
