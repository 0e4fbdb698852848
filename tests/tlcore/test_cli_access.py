"""On a server with sign-in, CLI runs record an owner, and cancel/resume/delete refuse what the app
would refuse unless an admin listed in TL_ADMINS asks with --admin."""

import json

import pytest
from specs import TINY_SIZE, tiny_spec

from tlcore.cli import main
from tlcore.records import RunStatus
from tlcore.runs import jobs
from tlcore.runs.store import RunStore

TINY = ["--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35", "--weights", "none",
        "--image-size", str(TINY_SIZE), "--epochs", "1", "--strategy", "frozen"]


@pytest.fixture
def signed_in(monkeypatch):
    monkeypatch.setenv("TL_AUTH", "header")
    monkeypatch.setenv("TL_ADMINS", "boss")
    monkeypatch.setenv("LOGNAME", "carol")  # getpass.getuser() reads it first


def alices_run(status: RunStatus = RunStatus.FAILED) -> str:
    store = RunStore()
    run, _ = store.create_run(tiny_spec(), owner="alice")
    if status != RunStatus.QUEUED:
        store.finish(run.id, status, "stopped for the test" if status == RunStatus.FAILED else None)
    return run.id


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_cli_run_belongs_to_the_unix_user_or_to_owner(capsys, signed_in):
    code, out, _ = run_cli(capsys, "train", *TINY, "--json")
    assert code == 0 and RunStore().get(json.loads(out)["run_id"]).owner == "carol"
    code, out, _ = run_cli(capsys, "train", *TINY, "--seed", "7", "--owner", "dave", "--json")
    assert RunStore().get(json.loads(out)["run_id"]).owner == "dave"


def test_others_runs_are_refused_unless_an_admin_says_admin(capsys, signed_in):
    run_id = alices_run()
    for verb in ("delete", "resume"):
        code, _, err = run_cli(capsys, verb, run_id)  # carol, by her Unix user
        assert code == 2 and "belongs to alice" in err and "--admin" in err
    code, _, err = run_cli(capsys, "delete", run_id, "--owner", "bob", "--admin")
    assert code == 2 and "bob is not an admin" in err
    code, _, err = run_cli(capsys, "delete", run_id, "--owner", "boss")  # an admin, but not on purpose
    assert code == 2 and "belongs to alice" in err
    assert RunStore().get(run_id).owner == "alice"
    assert run_cli(capsys, "delete", run_id, "--owner", "boss", "--admin")[0] == 0
    assert run_id not in [run.id for run in RunStore().list_runs()]


def test_owners_manage_their_own_runs(capsys, signed_in):
    queued = alices_run(RunStatus.QUEUED)
    code, out, _ = run_cli(capsys, "cancel", queued, "--owner", "alice")
    assert code == 0 and RunStore().get(queued).status == RunStatus.STOPPED
    assert run_cli(capsys, "delete", queued, "--owner", "alice")[0] == 0


def test_without_sign_in_everyone_manages_every_run(capsys, monkeypatch):
    monkeypatch.delenv("TL_AUTH", raising=False)
    run_id = alices_run()
    assert run_cli(capsys, "delete", run_id)[0] == 0


def test_a_submitted_run_belongs_to_the_unix_user_or_to_owner(capsys, signed_in, monkeypatch):
    monkeypatch.setattr(jobs, "dispatch", lambda store: [])  # queued is enough: no worker
    code, out, _ = run_cli(capsys, "submit", *TINY, "--json")
    assert code == 0 and RunStore().get(json.loads(out)["run_id"]).owner == "carol"
    code, out, _ = run_cli(capsys, "submit", *TINY, "--seed", "7", "--owner", "dave", "--json")
    assert code == 0 and RunStore().get(json.loads(out)["run_id"]).owner == "dave"


def test_cancel_refuses_anothers_run_unless_an_admin_says_admin(capsys, signed_in):
    run_id = alices_run(RunStatus.QUEUED)
    code, _, err = run_cli(capsys, "cancel", run_id)  # carol, by her Unix user
    assert code == 2 and "belongs to alice" in err and "--admin" in err
    code, _, err = run_cli(capsys, "cancel", run_id, "--owner", "bob", "--admin")
    assert code == 2 and "bob is not an admin" in err
    assert RunStore().get(run_id).status == RunStatus.QUEUED
    assert run_cli(capsys, "cancel", run_id, "--owner", "boss", "--admin")[0] == 0
    assert RunStore().get(run_id).status == RunStatus.STOPPED
