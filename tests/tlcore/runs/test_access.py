import pytest
from specs import tiny_spec

from tlcore.errors import ConfigError, PermissionDeniedError
from tlcore.runs.access import AccessConfig, User, can_manage, require_manage, resolve_user
from tlcore.runs.store import RunStore


def test_off_by_default_and_everyone_may_do_everything(monkeypatch):
    monkeypatch.delenv("TL_AUTH", raising=False)
    config = AccessConfig.from_env()
    assert not config.enabled
    assert resolve_user(config, None) == User(None, is_admin=True)


def test_header_mode_needs_an_identity_and_knows_admins(monkeypatch):
    monkeypatch.setenv("TL_AUTH", "header")
    monkeypatch.setenv("TL_ADMINS", "root@x, boss@x")
    config = AccessConfig.from_env()
    with pytest.raises(PermissionDeniedError, match="not signed in") as caught:
        resolve_user(config, "  ")
    assert "X-Forwarded-User" in caught.value.hint
    assert resolve_user(config, "boss@x").is_admin
    assert not resolve_user(config, "ann@x").is_admin


def test_unknown_mode_is_a_config_error(monkeypatch):
    monkeypatch.setenv("TL_AUTH", "kerberos")
    with pytest.raises(ConfigError, match="kerberos"):
        AccessConfig.from_env()


def test_only_owner_or_admin_manages_a_run():
    store = RunStore()
    run, _ = store.create_run(tiny_spec(), owner="ann@x")
    assert can_manage(User("ann@x", False), run)
    assert can_manage(User("boss@x", True), run)
    assert not can_manage(User("bob@x", False), run)
    with pytest.raises(PermissionDeniedError, match="ann@x"):
        require_manage(User("bob@x", False), run)
    orphan, _ = store.create_run(tiny_spec(epochs=2))
    assert not can_manage(User("bob@x", False), orphan)
