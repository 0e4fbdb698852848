"""The Collect page (AppTest): classes by name, uploads and camera shots, counts, save, hand-over."""

from __future__ import annotations

from apptools import open_app, texts
from imagegen import encode, png_declaring, random_pixels
from streamlit.testing.v1 import AppTest

from tlcore.config import RunSpec
from tlcore.data import collect

PAGE = "pages/collect.py"


def png(seed: int) -> tuple[str, bytes, str]:
    return f"img{seed}.png", encode(random_pixels(seed, 20, 20)), "image/png"


def nonce(at: AppTest) -> int:
    return at.session_state.get("collect.nonce", 0)


def upload(at: AppTest, class_name: str, files: list[tuple[str, bytes, str]]) -> None:
    at.file_uploader(key=f"collect.upload.{class_name}.{nonce(at)}").set_value(files)
    at.run()
    assert not at.exception


def counts(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def new_dataset(at: AppTest, name: str, classes: list[str]) -> None:
    at.text_input(key="collect.new_name").set_value(name)
    at.button(key="collect.create").click().run()
    for class_name in classes:
        at.text_input(key="collect.new_class").set_value(class_name)
        at.button(key="collect.add_class").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def test_two_classes_of_uploads_are_counted_saved_and_handed_to_configure():
    at = open_app(PAGE)
    assert not at.exception and at.title[0].value == "Collect"
    new_dataset(at, "toys", ["squares", "bars"])
    assert at.selectbox(key="collect.dataset").value == "toys"
    assert counts(at) == {"Images": "0", "bars": "0", "squares": "0"}

    upload(at, "squares", [png(i) for i in range(4)])
    upload(at, "bars", [png(10 + i) for i in range(3)])
    assert counts(at) == {"Images": "7", "bars": "3", "squares": "4"}
    assert collect.open_dataset("toys").counts == {"bars": 3, "squares": 4}
    assert "Added 3 image(s)." in texts(at)
    assert at.file_uploader(key=f"collect.upload.bars.{nonce(at)}").value == []  # emptied after a batch

    at.button(key="collect.save").click().run()
    assert "Saved “toys”: 7 images in 2 classes" in texts(at)
    at.button(key="collect.use").click().run()
    assert not at.exception
    draft: RunSpec = at.session_state["configure.draft"]
    assert draft.dataset.source == collect.open_dataset("toys").source
    assert at.title[0].value == "Configure"
    assert at.radio(key="configure.kind").value == "folder"
    assert at.text_input(key="configure.folder").value == str(collect.open_dataset("toys").path)
    at.switch_page("pages/configure.py").run()  # AppTest runs the page it was last switched to
    at.button(key="configure.preview").click().run()
    assert not at.error and "**2 classes, 7 images**" in texts(at)


def test_hostile_and_duplicate_uploads_are_explained_and_not_stored():
    at = open_app(PAGE)
    new_dataset(at, "toys", ["a", "b"])
    upload(at, "b", [png(1)])
    upload(at, "a", [png(2), ("again.png", png(2)[1], "image/png"),
                     ("bomb.png", png_declaring(50_000, 50_000), "image/png"),
                     ("notes.jpg", b"not a photo", "image/jpeg"), ("from-b.png", png(1)[1], "image/png")])
    errors = [e.value for e in at.error]
    assert len(errors) == 3, errors
    assert any(e.startswith("bomb\\.png") and "megapixels" in e for e in errors)
    assert any(e.startswith("notes\\.jpg") and "not a JPEG, PNG" in e for e in errors)
    assert any(e.startswith("from\\-b\\.png") and "already in the class 'b'" in e for e in errors)
    assert "Already in this class, not stored twice: again\\.png" in texts(at)
    assert counts(at) == {"Images": "2", "a": "1", "b": "1"}


def test_bad_names_are_refused_on_the_page():
    at = open_app(PAGE)
    at.text_input(key="collect.new_name").set_value("../outside")
    at.button(key="collect.create").click().run()
    assert any("path separator" in e.value for e in at.error)
    assert collect.list_datasets() == []
    new_dataset(at, "toys", ["cats"])
    at.text_input(key="collect.new_class").set_value("CATS")
    at.button(key="collect.add_class").click().run()
    assert any("'cats' already exists" in e.value for e in at.error)
    assert collect.open_dataset("toys").classes == ["cats"]


def test_images_and_classes_are_removed_and_saving_needs_two_full_classes():
    at = open_app(PAGE)
    new_dataset(at, "toys", ["a", "b"])
    upload(at, "a", [png(i) for i in range(3)])
    upload(at, "b", [png(10), png(11)])
    at.button(key="collect.save").click().run()
    assert any("'b' has 2. Every class needs at least 3" in e.value for e in at.error)

    victim = collect.list_images("toys", "a")[0].name
    at.button(key=f"collect.rm.a.{victim}").click().run()
    assert counts(at)["a"] == "2" and victim not in [p.name for p in collect.list_images("toys", "a")]
    at.button(key="collect.drop.b").click().run()
    assert counts(at) == {"Images": "2", "a": "2"} and collect.open_dataset("toys").classes == ["a"]
    at.button(key="collect.save").click().run()
    assert any("1 class(es); a classifier needs at least 2" in e.value for e in at.error)
    assert "collect.use" not in [b.key for b in at.button]


def test_camera_photos_go_to_the_chosen_class():
    at = open_app(PAGE)
    new_dataset(at, "toys", ["me", "not me"])
    at.toggle(key="collect.camera_on").set_value(True).run()
    at.selectbox(key="collect.camera_class").set_value("not me").run()
    for seed in (1, 2):
        photo = ("shot.jpg", encode(random_pixels(seed, 32, 32), "JPEG"), "image/jpeg")
        at.camera_input(key=f"collect.camera.{nonce(at)}").set_value(photo).run()
        assert not at.exception and not at.error
    assert counts(at) == {"Images": "2", "me": "0", "not me": "2"}
    assert all(path.suffix == ".jpg" for path in collect.list_images("toys", "not me"))


def test_an_existing_dataset_is_picked_up_again_and_can_be_deleted():
    collect.create_dataset("older")
    collect.add_class("older", "x")
    at = open_app(PAGE)
    assert at.selectbox(key="collect.dataset").value == "older"
    assert counts(at) == {"Images": "0", "x": "0"}
    at.button(key="collect.delete").click().run()
    assert not at.exception and collect.list_datasets() == []
    assert at.selectbox(key="collect.dataset").options == ["New dataset…"] and not at.metric
