"""Who may do what when the studio is shared. Off by default, for one person on a laptop.

On a team server set ``TL_AUTH``: ``oidc`` (Streamlit's ``st.login``, configured in
``.streamlit/secrets.toml``) or ``header`` (a trusted reverse proxy passes the signed-in user in
``TL_AUTH_HEADER``, ``X-Forwarded-User`` by default; Streamlit must then listen on loopback only,
or anyone could send that header). Runs belong to whoever launched them; only their owner or an
admin (``TL_ADMINS``, comma-separated) may stop or delete them. Everyone may look at every run.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from tlcore.errors import ConfigError, PermissionDeniedError
from tlcore.records import RunRecord

AUTH_MODES = ("off", "oidc", "header")
DEFAULT_HEADER = "X-Forwarded-User"


@dataclass(frozen=True)
class AccessConfig:
    mode: str = "off"
    header: str = DEFAULT_HEADER
    admins: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls) -> AccessConfig:
        mode = os.environ.get("TL_AUTH", "off").strip().lower() or "off"
        if mode not in AUTH_MODES:
            raise ConfigError(
                f"TL_AUTH={mode!r} is not a sign-in mode.", f"Use one of {', '.join(AUTH_MODES)}."
            )
        admins = frozenset(a.strip() for a in os.environ.get("TL_ADMINS", "").split(",") if a.strip())
        return cls(mode, os.environ.get("TL_AUTH_HEADER", DEFAULT_HEADER), admins)

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


@dataclass(frozen=True)
class User:
    """The person using the app; ``name`` is None when sign-in is off."""

    name: str | None
    is_admin: bool


def resolve_user(config: AccessConfig, identity: str | None) -> User:
    """The user behind ``identity`` (e-mail or proxy user name), or an error when there is none."""
    if not config.enabled:
        return User(None, is_admin=True)
    identity = (identity or "").strip()
    if not identity:
        hint = (
            "Sign in first." if config.mode == "oidc"
            else f"Open the studio through the team's proxy, which sets the {config.header} header."
        )
        raise PermissionDeniedError("You are not signed in.", hint)
    return User(identity, is_admin=identity in config.admins)


def cli_user(config: AccessConfig, owner: str | None = None, admin: bool = False) -> User:
    """The person behind a command on a server with sign-in: ``--owner`` or the Unix user.

    The command line trusts its shell, as the files under ``TL_HOME`` do: whoever can run it can
    read and write the store anyway. It records who launched a run, and keeps people from
    stopping each other's runs by mistake: an admin's powers need ``--admin`` too, so an admin
    acts as one only on purpose.

    Raises:
        PermissionDeniedError: ``--admin`` from someone not listed in ``TL_ADMINS``.
    """
    if not config.enabled:
        return User(None, is_admin=True)
    name = (owner or "").strip() or getpass.getuser()
    if admin and name not in config.admins:
        raise PermissionDeniedError(f"{name} is not an admin of this studio.",
                                    "Leave out --admin, or ask an admin listed in TL_ADMINS.")
    return User(name, is_admin=admin)


def can_manage(user: User, run: RunRecord) -> bool:
    """Whether ``user`` may stop or delete ``run``."""
    return user.is_admin or (run.owner is not None and run.owner == user.name)


def require_manage(user: User, run: RunRecord) -> None:
    if not can_manage(user, run):
        raise PermissionDeniedError(
            f"Run {run.id} belongs to {run.owner or 'nobody'}.",
            "Only its owner or an admin can stop, resume or delete it (from the CLI: --admin, "
            "if you are listed in TL_ADMINS).",
        )
