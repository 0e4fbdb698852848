"""The sign-in gate app.py runs before any page: Streamlit's side of ``tlcore.runs.access``."""

from __future__ import annotations

import streamlit as st

from tlcore.errors import TLError
from tlcore.runs.access import AccessConfig, User, resolve_user
from ui import glue

USER = "user"


def gate() -> User:
    """Resolve the visitor, or stop the script with a sign-in prompt or a friendly error."""
    try:
        config = AccessConfig.from_env()
        identity = None
        if config.mode == "oidc":
            if not st.user.is_logged_in:
                st.title("Transfer-Learning Studio")
                st.button("Log in", type="primary", on_click=st.login, key="auth.login")
                st.stop()
            identity = st.user.get("email") or st.user.get("name")
        elif config.mode == "header":
            identity = st.context.headers.get(config.header)
        user = resolve_user(config, identity)
    except TLError as exc:
        glue.show_error(exc)
        st.stop()
    st.session_state[USER] = user
    if config.enabled:
        with st.sidebar:
            st.caption(f"Signed in as **{user.name}**" + (" (admin)" if user.is_admin else ""))
            if config.mode == "oidc":
                st.button("Log out", on_click=st.logout, key="auth.logout")
    return user


def current_user() -> User:
    """The user the gate resolved in this script run."""
    return st.session_state.get(USER) or User(None, is_admin=True)
