"""Runs that know their data: a fingerprint in every run's key, and what changed since.

A finished run is reused only for the same settings *and* the same data. The fingerprint
(:attr:`tlcore.data.catalogue.Catalogue.fingerprint`) is taken from the catalogue when a run is
launched, which lists the files without decoding them; the worker records the data it trained
on in the run's ``data.json`` (fingerprint and manifest), from which the next launch on
changed data says how it changed ("3 images added to 'roses', 1 changed, 0 removed").
"""

from __future__ import annotations

from dataclasses import dataclass

from tlcore.config import RunSpec
from tlcore.data.bundle import DatasetBundle
from tlcore.data.catalogue import data_change
from tlcore.data.registry import list_dataset
from tlcore.errors import TLError
from tlcore.records import RunRecord, RunStatus
from tlcore.runs.store import RunStore

DATA_FILE = "data.json"
"""In a run's folder: the fingerprint and manifest of the data it trained on."""


@dataclass(frozen=True)
class DataIdentity:
    """The fingerprint and manifest (``id -> [identity, class]``) of a dataset now."""

    fingerprint: str
    manifest: dict[str, list[str]]

    @classmethod
    def of(cls, spec: RunSpec) -> DataIdentity:
        """List the spec's dataset (no decoding).

        Raises:
            ConfigError, DatasetError, UploadError: The dataset cannot be used.
        """
        catalogue = list_dataset(spec.dataset)
        return cls(catalogue.fingerprint, catalogue.manifest())


def save_data_record(store: RunStore, run_id: str, bundle: DatasetBundle) -> None:
    """Write what the run trained on, for ``show --json`` and the next launch's comparison."""
    store.write_json(
        run_id,
        DATA_FILE,
        {
            "fingerprint": bundle.fingerprint,
            "manifest": bundle.manifest,
            "skipped": [{"id": skipped.id, "reason": skipped.reason} for skipped in bundle.skipped],
        },
    )


def change_note(store: RunStore, spec: RunSpec, identity: DataIdentity) -> str | None:
    """How the data differs from the newest finished run of the same settings, or None.

    None when there is no such run, it saw the same data, or it did not record its data.
    """
    previous = next(
        (run for run in store.runs_with_spec_key(spec.key()) if run.status == RunStatus.FINISHED), None
    )
    if previous is None or previous.data_fingerprint == identity.fingerprint:
        return None
    try:
        recorded = store.read_json(previous.id, DATA_FILE)
    except TLError:  # an older run without data.json, or damaged files
        return f"The data differs from what finished run {previous.id} trained on; training anew."
    change = data_change(recorded.get("manifest", {}), identity.manifest)
    return (
        f"The data changed since finished run {previous.id}: {change.describe()}. Training anew."
        if change.any
        else None
    )


def trained_on_other_data(run: RunRecord, bundle: DatasetBundle) -> str | None:
    """A note when the data changed between the launch and the worker's start."""
    if run.data_fingerprint and bundle.fingerprint and run.data_fingerprint != bundle.fingerprint:
        return (
            "The data changed after this run was launched; it trained on the data as it is "
            f"now (fingerprint {bundle.fingerprint})."
        )
    return None
