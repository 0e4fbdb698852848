"""Collect: make a dataset in the browser, class by class, from uploads or the camera.

Every image is checked and stored by :mod:`tlcore.data.collect` as it is added, so a reload
loses nothing; **Save** checks that the dataset can be trained on, and **Use it on Configure**
puts it into Configure's draft as a ``folder:`` source.
"""

import dataclasses
from collections.abc import Callable

import streamlit as st

from tlcore.data import collect
from tlcore.images import IMAGE_EXTENSIONS
from ui import glue, widgets

glue.require_frame(__file__)

DATASET = "collect.dataset"
NOTES = "collect.notes"  # area -> messages an action (callback, upload) left for the next run
NONCE = "collect.nonce"  # part of the uploader and camera keys: a new value empties them
SAVED = "collect.saved"
DRAFT = "configure.draft"  # Configure's draft spec (pages/configure.py)
NEW = "New dataset…"
THUMBNAILS = 8
IMAGE_TYPES = [extension.lstrip(".") for extension in IMAGE_EXTENSIONS]
md = glue.literal


def note(area: str, kind: str, item: object) -> None:
    st.session_state.setdefault(NOTES, {}).setdefault(area, []).append((kind, item))


def show_notes(area: str) -> None:
    for kind, item in st.session_state.get(NOTES, {}).pop(area, []):
        if kind == "error":
            glue.show_error(item)
        elif kind == "success":
            st.success(item, icon=":material/check:")
        else:
            st.info(item, icon=":material/info:")


def act(area: str, fn: Callable[..., object], *args: object) -> object | None:
    """Run an engine call from a callback; a refusal becomes a note for the area."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - shown as a friendly message (unexpected ones logged)
        note(area, "error", exc)
        return None


def create_dataset() -> None:
    created = act("dataset", collect.create_dataset, st.session_state.get("collect.new_name", ""))
    if created is not None:
        st.session_state[DATASET] = created.name
        st.session_state["collect.new_name"] = ""


def add_class(dataset: str) -> None:
    if act("classes", collect.add_class, dataset, st.session_state.get("collect.new_class", "")):
        st.session_state["collect.new_class"] = ""


def delete_dataset(name: str) -> None:
    act("dataset", collect.remove_dataset, name)
    st.session_state.pop(DATASET, None)


def pick_dataset() -> str | None:
    """An existing dataset (which can be deleted), or the form that creates a new one."""
    names = glue.attempt(collect.list_datasets, doing="listing the collected datasets") or []
    if st.session_state.get(DATASET) not in [*names, NEW]:
        st.session_state.pop(DATASET, None)  # removed in another session
    pick_col, delete_col = st.columns([4, 1], vertical_alignment="bottom")
    choice = pick_col.selectbox("Dataset", [*names, NEW], key=DATASET)
    show_notes("dataset")
    if choice != NEW:
        with delete_col.popover("Delete dataset", icon=":material/delete_forever:"):
            st.button(f"Delete {md(choice)} and all its images", key="collect.delete",
                      on_click=delete_dataset, args=(choice,))
        return choice
    name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
    name_col.text_input("Name of the new dataset", key="collect.new_name", placeholder="e.g. my-toys")
    button_col.button("Create", icon=":material/create_new_folder:", key="collect.create",
                      on_click=create_dataset)
    return None


def store(dataset: str, class_name: str, files: list[tuple[str, bytes]]) -> None:
    """Add a batch of uploads, keep what happened as notes, and start with empty widgets."""
    report = act(f"class:{class_name}", collect.add_images, dataset, class_name, files)
    if report is not None:
        if report.added:
            note(f"class:{class_name}", "success", f"Added {len(report.added)} image(s).")
        if report.duplicates:
            note(f"class:{class_name}", "info", "Already in this class, not stored twice: "
                 + ", ".join(md(name) for name in report.duplicates))
        for upload_name, exc in report.refused:  # the same typed error, named after its file
            note(f"class:{class_name}", "error", type(exc)(f"{md(upload_name)}: {exc.message}", exc.hint))
    st.session_state[NONCE] = st.session_state.get(NONCE, 0) + 1
    st.rerun()


def count_metrics(dataset: collect.CollectedDataset) -> None:
    """The total and each class's number of images, six to a row."""
    cells = [("Images", dataset.total_images), *((md(n), c) for n, c in dataset.counts.items())]
    for start in range(0, len(cells), 6):
        for col, (label, value) in zip(st.columns(6), cells[start:start + 6], strict=False):
            col.metric(label, value)


def class_card(dataset: str, class_name: str, count: int, nonce: int) -> None:
    """One class: its uploader, its newest images (each removable), and its removal."""
    with st.container(border=True):
        head, remove = st.columns([4, 1], vertical_alignment="center")
        head.markdown(f"**{md(class_name)}** · {count} image(s)")
        with remove.popover("Remove class", icon=":material/delete:"):
            st.button(f"Remove {md(class_name)} and its {count} image(s)", key=f"collect.drop.{class_name}",
                      on_click=act, args=("classes", collect.remove_class, dataset, class_name))
        uploads = st.file_uploader(f"Add images to {md(class_name)}", type=IMAGE_TYPES,
                                   accept_multiple_files=True, key=f"collect.upload.{class_name}.{nonce}",
                                   max_upload_size=collect.MAX_IMAGE_BYTES // 2**20)
        if uploads:
            store(dataset, class_name, [(upload.name, upload.getvalue()) for upload in uploads])
        show_notes(f"class:{class_name}")
        images = glue.attempt(collect.list_images, dataset, class_name, doing="listing images") or []
        for col, path in zip(st.columns(THUMBNAILS), images[:THUMBNAILS], strict=False):
            col.image(str(path), width=64)
            col.button("Remove", key=f"collect.rm.{class_name}.{path.name}", type="tertiary",
                       on_click=act, args=(f"class:{class_name}", collect.remove_image, dataset,
                                           class_name, path.name))
        if len(images) > THUMBNAILS:
            st.caption(f"The {THUMBNAILS} newest are shown; {len(images) - THUMBNAILS} more are stored.")


def camera(dataset: str, classes: list[str], nonce: int) -> None:
    if st.session_state.get("collect.camera_class") not in classes:
        st.session_state.pop("collect.camera_class", None)
    if not classes or not st.toggle("Take photos with the camera", key="collect.camera_on"):
        return
    target = st.selectbox("Photos go to the class", classes, key="collect.camera_class")
    photo = st.camera_input("Take a photo", key=f"collect.camera.{nonce}")
    if photo is not None:
        store(dataset, target, [("camera.jpg", photo.getvalue())])


def use_on_configure(saved: collect.CollectedDataset) -> None:
    """Make the saved dataset the source of Configure's draft, then open Configure."""
    draft = st.session_state.get(DRAFT) or glue.attempt(glue.current_spec, doing="reading the experiment")
    if draft is None:
        return
    dataset = dataclasses.replace(draft.dataset, source=saved.source, data_dir=None)
    st.session_state[DRAFT] = dataclasses.replace(draft, dataset=dataset)
    for key in [key for key in st.session_state if key.startswith("configure.") and key != DRAFT]:
        del st.session_state[key]  # Configure's widgets then start from the draft, as after Load
    st.switch_page(widgets.CONFIGURE_PAGE)


st.title("Collect")
st.caption("Make a dataset without a zip: name it, add a class per kind of thing, then drop images on "
           "each class or take them with the camera. Images are stored as you add them.")
st.subheader("1 · Dataset")
name = pick_dataset()
current = glue.attempt(collect.open_dataset, name, doing="reading the dataset") if name else None
if current is None:
    st.stop()
nonce = st.session_state.get(NONCE, 0)

st.subheader("2 · Classes and images")
count_metrics(current)
show_notes("classes")
for class_name, count in current.counts.items():
    class_card(current.name, class_name, count, nonce)
new_col, add_col = st.columns([4, 1], vertical_alignment="bottom")
new_col.text_input("New class", key="collect.new_class", placeholder="e.g. cats")
add_col.button("Add class", icon=":material/add:", key="collect.add_class", on_click=add_class,
               args=(current.name,))
camera(current.name, current.classes, nonce)

st.subheader("3 · Save")
if st.button("Save dataset", type="primary", icon=":material/save:", key="collect.save"):
    st.session_state[SAVED] = glue.attempt(collect.ready_dataset, current.name, doing="checking the dataset")
saved = st.session_state.get(SAVED)
if saved is not None and saved.name == current.name and saved.counts == current.counts:
    st.success(f"Saved “{md(saved.name)}”: {saved.total_images} images in {len(saved.classes)} classes, "
               f"as the folder dataset {md(str(saved.path))}.", icon=":material/check:")
    if st.button("Use it on Configure", icon=":material/tune:", key="collect.use"):
        use_on_configure(saved)
elif saved is not None and saved.name == current.name:
    st.caption("The dataset changed since it was saved; save it again to use it.")
