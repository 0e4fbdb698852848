"""The protocol client's message builders and what it reads from the server's messages."""

from email.parser import BytesParser

import st_client
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import UploadedFileInfo
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg


def test_a_rerun_names_the_page_fragment_widgets_and_cached_messages():
    widget = st_client.uploader_state("uploader-id", [UploadedFileInfo(file_id="f1", name="a.jpg", size=3)])
    sent = BackMsg.FromString(st_client.rerun_message(
        page_hash="abc", fragment_id="frag", widgets=[widget], auto=True,
        cached={"h2", "h1"}).SerializeToString())
    state = sent.rerun_script
    assert sent.WhichOneof("type") == "rerun_script"
    assert (state.page_script_hash, state.page_name, state.fragment_id) == ("abc", "", "frag")
    assert state.is_auto_rerun and list(state.cached_message_hashes) == ["h1", "h2"]
    files = state.widget_states.widgets[0].file_uploader_state_value.uploaded_file_info
    assert state.widget_states.widgets[0].id == "uploader-id" and [f.name for f in files] == ["a.jpg"]


def test_a_new_session_picks_its_page_by_url_path_and_query():
    state = st_client.rerun_message(page_name="train", query="run=abc").rerun_script
    assert (state.page_name, state.page_script_hash, state.query_string) == ("train", "", "run=abc")
    assert not state.fragment_id and not state.is_auto_rerun


def test_a_file_urls_request_lists_the_names_for_its_session():
    request = st_client.file_urls_message("req-1", "session-9", ["photo.jpg"]).file_urls_request
    assert (request.request_id, request.session_id, list(request.file_names)) == (
        "req-1", "session-9", ["photo.jpg"])


def test_the_upload_body_is_one_file_in_multipart_form_data():
    body = st_client.multipart_file("photo.jpg", "image/jpeg", b"\xff\xd8jpeg bytes", "BOUNDARY")
    message = BytesParser().parsebytes(
        b"Content-Type: multipart/form-data; boundary=BOUNDARY\r\n\r\n" + body)
    [part] = message.get_payload()
    assert part.get_filename() == "photo.jpg" and part.get_content_type() == "image/jpeg"
    assert part.get_payload(decode=True) == b"\xff\xd8jpeg bytes"


def test_the_xsrf_token_comes_from_its_cookie_among_others():
    headers = ["other=1; Path=/", "_streamlit_xsrf=2|ab|cd|123; Path=/; SameSite=Lax"]
    assert st_client.xsrf_token(headers) == "2|ab|cd|123"
    assert st_client.xsrf_token(["other=1"]) is None


def _element(kind: str, **fields: object) -> ForwardMsg:
    message = ForwardMsg()
    getattr(message.delta.new_element, kind).SetInParent()
    for name, value in fields.items():
        setattr(getattr(message.delta.new_element, kind), name, value)
    return message


def test_a_render_keeps_elements_with_their_text_and_sets_errors_apart():
    render = st_client.Render()
    st_client.add_element(render, _element("heading", body="All runs"))
    st_client.add_element(render, _element("plotly_chart", spec="{}"))
    st_client.add_element(render, _element("alert", body="Careful", format=2))
    st_client.add_element(render, _element("alert", body="It broke", format=1))
    assert render.shows("heading", "All runs") and not render.shows("heading", "Home")
    assert render.count("plotly_chart") == 1 and render.count("alert") == 2
    assert render.errors == ["It broke"]


def test_a_finished_run_ends_a_request_but_a_run_stopped_for_a_rerun_does_not():
    assert ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY in st_client.DONE
    assert ForwardMsg.FINISHED_EARLY_FOR_RERUN not in st_client.DONE


def test_the_session_learns_the_pages_and_the_page_shown_from_the_navigation():
    session = st_client.Session("http://127.0.0.1:1")
    message = ForwardMsg()
    message.navigation.page_script_hash = "hash-compare"
    for path, page_hash in (("", "hash-home"), ("compare", "hash-compare")):
        message.navigation.app_pages.add(url_pathname=path, page_script_hash=page_hash)
    session._note(message, "navigation", st_client.Render())
    assert session.page_hash == "hash-compare"
    assert session.pages == {"": "hash-home", "compare": "hash-compare"}


def test_the_session_remembers_the_uploader_and_its_fragment():
    session, render = st_client.Session("http://127.0.0.1:1"), st_client.Render()
    message = _element("file_uploader", id="uploader-id", label="Images")
    message.delta.fragment_id = "fragment-1"
    session._note(message, "delta", render)
    assert session.uploader == ("uploader-id", "fragment-1")
    assert render.shows("file_uploader", "Images")
