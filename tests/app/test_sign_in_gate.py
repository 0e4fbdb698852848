"""The sign-in gate in front of every page."""

from apptools import open_app, texts


def test_without_sign_in_configured_the_pages_open(monkeypatch):
    monkeypatch.delenv("TL_AUTH", raising=False)
    at = open_app("pages/train.py")
    assert not at.exception
    assert "Train" in [t.value for t in at.title]


def test_header_mode_without_the_proxy_header_stops_before_any_page(monkeypatch):
    monkeypatch.setenv("TL_AUTH", "header")
    at = open_app()
    assert not at.exception
    assert "You are not signed in." in [e.value for e in at.error]
    assert "X-Forwarded-User" in texts(at)
    assert not [t.value for t in at.title]  # no page rendered
