"""A Streamlit session without a browser: the app's own protocol over its websocket.

A browser talks to ``streamlit run`` through one websocket, ``/_stcore/stream``, carrying
protobuf messages: it sends a ``BackMsg`` (``rerun_script`` with the page and the widget
values, ``file_urls_request`` before an upload) and receives ``ForwardMsg``s (the page's
elements, ``script_finished``). :class:`Session` does the same from Python, so a load test can
run tens of sessions from one process without tens of browsers eating the server's CPU.

What it times is the server: from sending the request until ``script_finished``, i.e. running
the page script and serialising its elements. It does not include what a browser adds on top
(parsing the messages, drawing charts), which happens on each visitor's own machine.

It behaves like the browser where that changes the server's work: new connections pick the
page by URL path, page switches by the page hash from the ``navigation`` message, widgets
inside a fragment rerun only that fragment, ``run_every`` fragments are rerun on their timer
while the session idles, and messages already received are announced as cached so the server
sends references instead of repeating them. It sends no other widget values: every widget
keeps its default, as on a first visit.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import FileURLs, UploadedFileInfo
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import ClientConnection, connect

STREAM_PATH = "/_stcore/stream"
HEALTH_PATH = "/_stcore/health"
XSRF_COOKIE = "_streamlit_xsrf"
CACHED_RUNS = 2
"""Script runs a received message stays announced as cached (the browser's default age)."""
DONE = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY,
        ForwardMsg.FINISHED_WITH_COMPILE_ERROR}
"""``script_finished`` values that end a request (FINISHED_EARLY_FOR_RERUN does not: the
script called ``st.rerun()`` and its next run follows)."""


class ProtocolError(RuntimeError):
    """The server answered something a browser would not accept."""


# ---- messages (pure) -------------------------------------------------------------------


def rerun_message(page_name: str = "", page_hash: str = "", query: str = "",
                  widgets: Iterable[WidgetState] = (), fragment_id: str = "",
                  auto: bool = False, cached: Iterable[str] = ()) -> BackMsg:
    """``rerun_script``: run a page (by URL path on a new session, else by hash) or a fragment."""
    message = BackMsg()
    state = message.rerun_script
    state.page_name = page_name
    state.page_script_hash = page_hash
    state.query_string = query
    state.fragment_id = fragment_id
    state.is_auto_rerun = auto
    state.widget_states.widgets.extend(widgets)
    state.cached_message_hashes.extend(sorted(cached))
    return message


def file_urls_message(request_id: str, session_id: str, names: Sequence[str]) -> BackMsg:
    """``file_urls_request``: where to upload ``names`` (the server answers with one URL each)."""
    message = BackMsg()
    message.file_urls_request.request_id = request_id
    message.file_urls_request.session_id = session_id
    message.file_urls_request.file_names.extend(names)
    return message


def uploader_state(widget_id: str, files: Sequence[UploadedFileInfo]) -> WidgetState:
    """A file_uploader's value after the upload: the files the server now holds."""
    state = WidgetState(id=widget_id)
    state.file_uploader_state_value.uploaded_file_info.extend(files)
    return state


def multipart_file(name: str, content_type: str, data: bytes, boundary: str) -> bytes:
    """A multipart/form-data body with one file, as the upload endpoint expects."""
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode()


def xsrf_token(set_cookie_headers: Iterable[str]) -> str | None:
    """The XSRF token the server set as a cookie (sent back as a header with uploads)."""
    for header in set_cookie_headers:
        cookie = SimpleCookie()
        cookie.load(header)
        if XSRF_COOKIE in cookie:
            return cookie[XSRF_COOKIE].value
    return None


# ---- what one request brought back -----------------------------------------------------


@dataclass
class Render:
    """The elements one script or fragment run sent, and how long it took."""

    seconds: float = 0.0
    fragment: bool = False
    elements: list[tuple[str, str]] = field(default_factory=list)
    """(element type, its main text) in arrival order, e.g. ("heading", "Train")."""
    errors: list[str] = field(default_factory=list)
    """Error alerts and exceptions the page showed."""

    def count(self, kind: str) -> int:
        return sum(1 for element_kind, _ in self.elements if element_kind == kind)

    def shows(self, kind: str, text: str) -> bool:
        return (kind, text) in self.elements


def element_text(kind: str, element: object) -> str:
    """The text that identifies an element to a reader: heading body, button label, alert."""
    for name in ("body", "label", "message"):
        value = getattr(element, name, None)
        if isinstance(value, str):
            return value
    return ""


def add_element(render: Render, message: ForwardMsg) -> None:
    """Record a ``new_element`` delta in ``render``; errors are kept apart."""
    element = message.delta.new_element
    kind = element.WhichOneof("type") or ""
    inner = getattr(element, kind) if kind else None
    render.elements.append((kind, element_text(kind, inner)))
    if kind == "exception" or (kind == "alert" and inner.format == inner.ERROR):
        render.errors.append(element_text(kind, inner))


# ---- a session -------------------------------------------------------------------------


class Session:
    """One visitor's connection to the app. Requests run one at a time, as in a browser tab."""

    def __init__(self, base: str, timeout: float = 60.0) -> None:
        self.base = base
        self.timeout = timeout
        self.ws: ClientConnection | None = None
        self.token: str | None = None
        self.session_id = ""
        self.pages: dict[str, str] = {}
        """URL path -> page script hash, from the ``navigation`` message."""
        self.page_hash = ""
        """The page shown; every rerun names it, as the browser's do."""
        self.auto_reruns: dict[str, float] = {}
        """Fragment id -> interval of the ``run_every`` fragments on the page shown."""
        self.uploader: tuple[str, str] | None = None
        """(widget id, fragment id) of the page's file uploader, if it has one."""
        self.widgets: list[WidgetState] = []
        self.cache: dict[str, ForwardMsg] = {}
        self.recent: deque[set[str]] = deque(maxlen=CACHED_RUNS)

    async def open(self, path: str, query: str = "") -> Render:
        """A new tab on ``/<path>``: fetch the XSRF cookie, connect, run the page."""
        started = time.perf_counter()
        self.token = await asyncio.to_thread(self._fetch_token)
        ws_url = "ws" + self.base.removeprefix("http") + STREAM_PATH
        headers = {"Origin": self.base}
        if self.token:
            headers["Cookie"] = f"{XSRF_COOKIE}={self.token}"
        self.ws = await connect(ws_url, subprotocols=["streamlit", self.token or ""],
                                additional_headers=headers, max_size=None,
                                open_timeout=self.timeout)
        render = await self._run(rerun_message(page_name=path, query=query), page=True)
        render.seconds = time.perf_counter() - started
        return render

    async def switch(self, path: str) -> Render:
        """A click on the page's link in the sidebar."""
        if path not in self.pages:
            raise ProtocolError(f"no page {path!r} in the navigation {sorted(self.pages)}")
        return await self._run(rerun_message(page_hash=self.pages[path]), page=True)

    async def upload(self, name: str, content_type: str, data: bytes) -> Render:
        """Drop one file on the page's uploader: ask for a URL, PUT the file, rerun."""
        if self.uploader is None:
            raise ProtocolError("the page shows no file uploader")
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        await self._send(file_urls_message(request_id, self.session_id, [name]))
        urls = await self._file_urls(request_id)
        await asyncio.to_thread(self._put, urls.upload_url, name, content_type, data)
        widget_id, fragment_id = self.uploader
        info = UploadedFileInfo(file_id=urls.file_id, name=name, size=len(data), file_urls=urls)
        self.widgets = [uploader_state(widget_id, [info])]
        render = await self._run(rerun_message(page_hash=self.page_hash, widgets=self.widgets,
                                               fragment_id=fragment_id, cached=self._cached()),
                                 page=False)
        render.seconds = time.perf_counter() - started
        return render

    async def idle(self, seconds: float) -> list[Render]:
        """Read the page for ``seconds``, rerunning ``run_every`` fragments when they are due."""
        end = time.monotonic() + seconds
        due = {fragment: time.monotonic() + interval for fragment, interval in self.auto_reruns.items()}
        renders = []
        while due:
            fragment, at = min(due.items(), key=lambda item: item[1])
            if at >= end:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            renders.append(await self._run(rerun_message(
                page_hash=self.page_hash, widgets=self.widgets, fragment_id=fragment, auto=True,
                cached=self._cached()), page=False))
            due = {f: (time.monotonic() + self.auto_reruns[f] if f == fragment else t)
                   for f, t in due.items() if f in self.auto_reruns}
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        return renders

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    # -- plumbing ------------------------------------------------------------------------

    def _fetch_token(self) -> str | None:
        with urllib.request.urlopen(self.base + HEALTH_PATH, timeout=self.timeout) as answer:
            return xsrf_token(answer.headers.get_all("Set-Cookie") or [])

    def _put(self, upload_path: str, name: str, content_type: str, data: bytes) -> None:
        boundary = uuid.uuid4().hex
        request = urllib.request.Request(
            self.base + upload_path, method="PUT",
            data=multipart_file(name, content_type, data, boundary),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if self.token:
            request.add_header("X-Xsrftoken", self.token)
            request.add_header("Cookie", f"{XSRF_COOKIE}={self.token}")
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            if answer.status not in (200, 204):
                raise ProtocolError(f"upload answered HTTP {answer.status}")

    async def _send(self, message: BackMsg) -> None:
        if self.ws is None:
            raise ProtocolError("not connected")
        await self.ws.send(message.SerializeToString())

    async def _receive(self) -> ForwardMsg:
        if self.ws is None:
            raise ProtocolError("not connected")
        message = ForwardMsg()
        message.ParseFromString(await asyncio.wait_for(self.ws.recv(), self.timeout))
        if not self.recent:
            self.recent.append(set())
        if message.WhichOneof("type") == "ref_hash":
            if message.ref_hash not in self.cache:
                raise ProtocolError(f"reference to a message never received: {message.ref_hash}")
            self.recent[-1].add(message.ref_hash)
            return self.cache[message.ref_hash]
        if message.metadata.cacheable:
            self.cache[message.hash] = message
            self.recent[-1].add(message.hash)
        return message

    async def _file_urls(self, request_id: str) -> FileURLs:
        while True:
            message = await self._receive()
            if message.WhichOneof("type") == "file_urls_response":
                response = message.file_urls_response
                if response.response_id != request_id:
                    continue
                if response.error_msg or not response.file_urls:
                    raise ProtocolError(f"no upload URL: {response.error_msg}")
                return response.file_urls[0]

    async def _run(self, request: BackMsg, page: bool) -> Render:
        """Send a rerun and read until its ``script_finished``; a page run resets page state."""
        if page:
            self.auto_reruns, self.uploader, self.widgets = {}, None, []
            request.rerun_script.cached_message_hashes[:] = sorted(self._cached())
        started = time.perf_counter()
        self.recent.append(set())
        await self._send(request)
        render = Render(fragment=bool(request.rerun_script.fragment_id))
        while True:
            message = await self._receive()
            kind = message.WhichOneof("type")
            if kind == "script_finished" and message.script_finished in DONE:
                break
            self._note(message, kind, render)
        render.seconds = time.perf_counter() - started
        self._forget_old()
        return render

    def _note(self, message: ForwardMsg, kind: str | None, render: Render) -> None:
        """What the browser would remember from a message: pages, fragments, the uploader."""
        if kind == "new_session":
            self.session_id = message.new_session.initialize.session_id or self.session_id
            self.page_hash = message.new_session.page_script_hash
        elif kind == "navigation":  # names the page st.navigation picked: a load by URL path
            self.page_hash = message.navigation.page_script_hash  # only learns it here
            self.pages = {page.url_pathname: page.page_script_hash
                          for page in message.navigation.app_pages}
        elif kind == "auto_rerun":
            self.auto_reruns[message.auto_rerun.fragment_id] = message.auto_rerun.interval
        elif kind == "stop_auto_rerun":
            for fragment in message.stop_auto_rerun.fragment_ids:
                self.auto_reruns.pop(fragment, None)
        elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            add_element(render, message)
            element = message.delta.new_element
            if element.WhichOneof("type") == "file_uploader":
                self.uploader = (element.file_uploader.id, message.delta.fragment_id)

    def _cached(self) -> set[str]:
        return set().union(*self.recent) if self.recent else set()

    def _forget_old(self) -> None:
        keep = self._cached()
        self.cache = {key: value for key, value in self.cache.items() if key in keep}
