"""Uploads and files over REST (CONTRACT v1.1, "Attachments"): the upload route and its
limits, every file URL refusing everyone but members with a 404, files served inertly, and
attachments in every view of a message."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from messaging.changes import do_edit_message
from messaging.conversations import do_remove_member
from messaging.models import Attachment
from tests import files

INERT = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}


@pytest.fixture
def chat(make_user, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    return alice, bob, make_group(alice, [bob])


def upload(api, user, content: bytes, name: str, content_type: str = "application/octet-stream", **fields):
    file = SimpleUploadedFile(name, content, content_type=content_type)
    return api.as_user(user).post("/api/v1/uploads", {"file": file, **fields}, format="multipart")


def send_with(api, user, group, ids, key="k1", body="look"):
    return api.as_user(user).post(f"/api/v1/conversations/{group.pk}/messages",
                                  {"client_msg_id": key, "body": body, "attachments": ids}, format="json")


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def assert_inert(response):
    for header, value in INERT.items():
        assert response[header] == value, header


@pytest.fixture
def sent_photo(api, chat):
    alice, bob, group = chat
    created = upload(api, alice, files.png(320, 200), "photo.png", "image/png", conversation=group.pk)
    assert created.status_code == 201, created.content
    sent = send_with(api, alice, group, [created.json()["id"]], body="")
    assert sent.status_code == 201, sent.content
    return alice, bob, group, sent.json()["message"]


# --- The upload route ----------------------------------------------------------------------------

def test_an_upload_answers_the_contracts_fields_with_the_type_found_in_its_bytes(api, chat):
    alice, _bob, group = chat
    response = upload(api, alice, files.png(10, 20), "dot.jpg", "application/pdf", conversation=group.pk)
    assert response.status_code == 201
    answer = response.json()
    assert {k: answer[k] for k in ("name", "size", "content_type", "width", "height")} == {
        "name": "dot.jpg.png", "size": len(files.png(10, 20)), "content_type": "image/png", "width": 10, "height": 20}
    assert answer["url"] == f"/api/v1/files/{answer['id']}"


def test_a_file_over_the_limit_is_a_413_and_nothing_is_stored(api, chat, settings, media_root):
    alice, _bob, _group = chat
    settings.PARLEY_UPLOAD_MAX_BYTES = 1000
    response = upload(api, alice, b"x" * 5000, "big.txt")
    assert (response.status_code, response.json()["code"]) == (413, "too_large")
    assert not Attachment.objects.exists() and not list(media_root.rglob("*.*"))
    assert upload(api, alice, b"x" * 1000, "fits.txt").status_code == 201


def test_a_body_declaring_more_than_the_limit_is_refused_before_it_is_read(api, chat, settings):
    alice, _bob, _group = chat
    settings.PARLEY_UPLOAD_MAX_BYTES = 1000
    response = api.as_user(alice).generic("POST", "/api/v1/uploads", b"--x--", content_type="multipart/form-data; boundary=x",
                                          CONTENT_LENGTH=str(10 * 1024 * 1024))
    assert response.status_code == 413


def test_a_type_off_the_allow_list_a_damaged_image_and_a_bomb_are_400s(api, chat):
    alice, _bob, _group = chat
    for content, name in ((b"MZ\x90\x00\x03" + b"\x00" * 200, "setup.exe"), (files.HTML_PAGE, "page.html"),
                          (files.png(50, 50)[:70], "broken.png"), (files.png_bomb(), "bomb.png")):
        response = upload(api, alice, content, name, "image/png")
        assert (response.status_code, response.json()["code"]) == (400, "invalid"), name
        assert "file" in response.json()["fields"]
    assert not Attachment.objects.exists()


def test_an_upload_without_a_file_or_for_a_conversation_not_yours_is_refused(api, chat, make_user):
    _alice, _bob, group = chat
    stranger = make_user()
    assert api.as_user(stranger).post("/api/v1/uploads", {}, format="multipart").status_code == 400
    assert upload(api, stranger, b"hello", "a.txt", conversation=group.pk).status_code == 404
    assert upload(api, stranger, b"hello", "a.txt", conversation="abc").status_code == 400


def test_over_the_upload_rate_is_a_429(api, chat, settings):
    alice, _bob, _group = chat
    settings.PARLEY_RATE_UPLOAD = "1/m"
    assert upload(api, alice, b"first", "1.txt").status_code == 201
    response = upload(api, alice, b"second", "2.txt")
    assert response.status_code == 429 and response["Retry-After"]


def test_an_upload_can_be_taken_back_by_its_uploader_only(api, chat):
    alice, bob, _group = chat
    upload_id = upload(api, alice, b"oops", "oops.txt").json()["id"]
    assert api.as_user(bob).delete(f"/api/v1/uploads/{upload_id}").status_code == 404
    assert api.as_user(alice).delete(f"/api/v1/uploads/{upload_id}").status_code == 204
    assert api.as_user(alice).get(f"/api/v1/files/{upload_id}").status_code == 404


def test_a_session_upload_needs_the_csrf_token_like_every_unsafe_request(chat):
    alice, _bob, _group = chat
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    refused = browser.post("/api/v1/uploads", {"file": SimpleUploadedFile("a.txt", b"hello")})
    assert refused.status_code == 403
    browser.get("/")  # the page sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    accepted = browser.post("/api/v1/uploads", {"file": SimpleUploadedFile("a.txt", b"hello")},
                            HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201, accepted.content


def test_a_session_upload_over_the_limit_is_a_413_too(chat, settings):
    """The CSRF check reads a session's body first: the limit holds there as well."""
    alice, _bob, _group = chat
    settings.PARLEY_UPLOAD_MAX_BYTES = 1000
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    browser.get("/")
    response = browser.post("/api/v1/uploads", {"file": SimpleUploadedFile("a.txt", b"y" * 5000)},
                            HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)
    assert response.status_code == 413


# --- Sending ------------------------------------------------------------------------------------

def test_a_message_with_attachments_may_have_no_text_and_one_without_must(api, chat):
    alice, _bob, group = chat
    assert send_with(api, alice, group, [], body=" ").status_code == 400
    assert send_with(api, alice, group, ["1"], key="k2").status_code == 400
    assert send_with(api, alice, group, list(range(1, 12)), key="k3").status_code == 400


def test_someone_elses_upload_cannot_be_attached(api, chat):
    alice, bob, group = chat
    bobs = upload(api, bob, b"mine", "mine.txt").json()["id"]
    response = send_with(api, alice, group, [bobs])
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_a_retry_of_a_send_with_attachments_is_the_stored_message(api, sent_photo):
    alice, _bob, group, message = sent_photo
    ids = [a["id"] for a in message["attachments"]]
    again = send_with(api, alice, group, ids, body="")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["message"]["attachments"] == message["attachments"]
    assert Attachment.objects.filter(message_id=message["id"]).count() == 1


# --- Serving ------------------------------------------------------------------------------------

def test_members_get_the_image_inline_and_its_thumbnail_with_inert_headers(api, sent_photo):
    _alice, bob, _group, message = sent_photo
    (shown,) = message["attachments"]
    response = api.as_user(bob).get(shown["url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("inline")
    assert body_of(response) == files.png(320, 200)
    assert_inert(response)
    thumbnail = api.as_user(bob).get(shown["thumbnail_url"])
    assert (thumbnail.status_code, thumbnail["Content-Type"]) == (200, "image/webp")
    assert_inert(thumbnail)
    assert "private" in response["Cache-Control"]


@pytest.mark.parametrize("who", ["outsider", "logged_out", "removed", "bad_token"])
def test_every_file_url_is_404_to_anyone_but_the_members(api, sent_photo, make_user, who):
    alice, bob, group, message = sent_photo
    (shown,) = message["attachments"]
    client = api
    client.credentials()  # the fixtures signed in as alice
    if who == "outsider":
        client = api.as_user(make_user())
    elif who == "removed":
        do_remove_member(actor=alice, conversation_id=group.pk, user_id=bob.pk)
        client = api.as_user(bob)
    elif who == "bad_token":
        client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    for url in (shown["url"], shown["thumbnail_url"], shown["url"] + "/", f"/api/v1/files/{shown['id'] + 1000}"):
        response = client.get(url)
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), (who, url)


def test_an_upload_not_sent_yet_is_its_uploaders_alone(api, chat):
    alice, bob, group = chat
    answer = upload(api, alice, files.png(), "draft.png", conversation=group.pk).json()
    assert api.as_user(alice).get(answer["thumbnail_url"]).status_code == 200
    assert api.as_user(bob).get(answer["url"]).status_code == 404


def test_a_deleted_messages_files_are_404_and_gone_from_the_storage(api, sent_photo, media_root,
                                                                  django_capture_on_commit_callbacks):
    alice, bob, _group, message = sent_photo
    with django_capture_on_commit_callbacks(execute=True):
        deleted = api.as_user(alice).delete(f"/api/v1/messages/{message['id']}")
    assert deleted.json()["attachments"] == []
    assert api.as_user(bob).get(message["attachments"][0]["url"]).status_code == 404
    assert not [p for p in media_root.rglob("*") if p.is_file()]


def test_a_non_image_is_a_download_in_the_type_of_its_bytes(api, chat):
    alice, bob, group = chat
    pdf = upload(api, alice, files.pdf_html_polyglot(), "report.html", "text/html").json()
    send_with(api, alice, group, [pdf["id"]])
    response = api.as_user(bob).get(pdf["url"])
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="report.html.pdf"'
    assert_inert(response)


def test_a_png_that_is_also_an_html_page_is_served_only_as_an_image(api, chat):
    alice, bob, group = chat
    polyglot = upload(api, alice, files.png_html_polyglot(), "cute.html", "text/html").json()
    assert polyglot["content_type"] == "image/png"
    send_with(api, alice, group, [polyglot["id"]])
    response = api.as_user(bob).get(polyglot["url"])
    assert response["Content-Type"] == "image/png" and b"<script>" in body_of(response)
    assert_inert(response)  # no sniffing into HTML, and no script could run in it anyway


@pytest.mark.parametrize("content, kind", [(files.SVG_WITH_SCRIPT, "image/svg+xml"), (files.HTML_PAGE, "text/html")])
def test_svg_and_html_are_never_served_inline_even_where_allowed(api, chat, settings, content, kind):
    alice, bob, group = chat
    settings.PARLEY_UPLOAD_ALLOWED_TYPES = ["image/*", "text/*"]
    created = upload(api, alice, content, "drawing.svg", "image/svg+xml").json()
    assert created["content_type"] == kind and created["thumbnail_url"] is None
    send_with(api, alice, group, [created["id"]])
    response = api.as_user(bob).get(created["url"])
    assert response["Content-Type"] == kind
    assert response["Content-Disposition"].startswith("attachment")
    assert_inert(response)


def test_file_names_in_the_download_header_are_quoted_safely(api, chat):
    alice, bob, group = chat
    created = upload(api, alice, b"plain text", 'na"me\r\nX-Evil: 1;.txt').json()
    send_with(api, alice, group, [created["id"]])
    response = api.as_user(bob).get(created["url"])
    assert "X-Evil" not in response.headers
    assert "\r" not in response["Content-Disposition"] and "\n" not in response["Content-Disposition"]


@pytest.mark.parametrize("mode, header", [("x-accel-redirect", "X-Accel-Redirect"), ("x-sendfile", "X-Sendfile")])
def test_the_front_server_can_send_the_body_after_the_check(api, sent_photo, settings, media_root, mode, header):
    _alice, bob, _group, message = sent_photo
    settings.PARLEY_FILE_SERVE = mode
    row = Attachment.objects.get()
    response = api.as_user(bob).get(message["attachments"][0]["url"])
    assert response.status_code == 200 and response.content == b""
    expected = {"x-accel-redirect": f"/_parley_files/{row.storage_name}",
                "x-sendfile": str(media_root / row.storage_name)}[mode]
    assert response[header] == expected
    assert_inert(response)
    assert response["Content-Type"] == "image/png"
    outsider = api.as_user(type(bob).objects.create_user("nosy"))
    refused = outsider.get(message["attachments"][0]["url"])
    assert refused.status_code == 404 and header not in refused.headers


# --- Attachments in every view of a message ---------------------------------------------------------

def test_attachments_are_in_history_pages_and_the_change_stream(api, sent_photo):
    alice, bob, group, message = sent_photo
    page = api.as_user(bob).get(f"/api/v1/conversations/{group.pk}/messages").json()
    assert page["messages"][0]["attachments"] == message["attachments"]
    do_edit_message(editor=alice, message_id=message["id"], body="with a caption")
    changes = api.as_user(bob).get(f"/api/v1/conversations/{group.pk}/changes").json()["changes"]
    assert changes[0]["message"]["attachments"] == message["attachments"]


def test_the_files_path_is_the_one_the_api_serves(sent_photo):
    from django.urls import reverse

    _alice, _bob, _group, message = sent_photo
    (shown,) = message["attachments"]
    assert shown["url"] == reverse("api:file", kwargs={"attachment_id": shown["id"]})
    assert shown["thumbnail_url"] == reverse("api:file-thumbnail", kwargs={"attachment_id": shown["id"]})
