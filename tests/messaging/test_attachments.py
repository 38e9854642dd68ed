"""Uploads and attachments in the core (messaging.attachments): what is stored and how, who
may attach what, idempotency, and files that go when their message goes."""
from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from messaging import attachments
from messaging.attachments import clean_name, do_upload, sweep
from messaging.changes import do_delete_message
from messaging.conversations import do_remove_member
from messaging.errors import Conflict, Invalid, NotFound, RateLimited, TooLarge
from messaging.models import Attachment, Message
from messaging.moderation import do_flag_message, do_resolve_flag
from messaging.send import do_send_message
from tests import files

pytestmark = pytest.mark.django_db

STORAGE_NAME = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}(-thumb\.webp)?$")


@pytest.fixture
def chat(make_user, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    return alice, bob, make_group(alice, [bob])


def stored_files(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def send(sender, group, key="k1", body="look", attachments=None):
    return do_send_message(sender=sender, conversation_id=group.pk, client_msg_id=key, body=body,
                           attachments=attachments)


# --- Storing ----------------------------------------------------------------------------------

def test_an_image_is_stored_under_a_server_made_name_with_a_thumbnail_and_its_size(chat, media_root):
    alice, _bob, group = chat
    row = do_upload(uploader=alice, file=files.upload(files.png(640, 480), "holiday.png"), conversation_id=group.pk)
    assert (row.content_type, row.width, row.height, row.name) == ("image/png", 640, 480, "holiday.png")
    assert STORAGE_NAME.match(row.storage_name) and STORAGE_NAME.match(row.thumbnail_name)
    assert stored_files(media_root) == {row.storage_name, row.thumbnail_name}
    with Image.open(media_root / row.thumbnail_name) as thumbnail:
        assert thumbnail.format == "WEBP" and max(thumbnail.size) <= 480


def test_the_type_comes_from_the_bytes_never_from_the_clients_word(chat):
    alice, _bob, _group = chat
    pdf = do_upload(uploader=alice, file=files.upload(b"%PDF-1.4\n%%EOF\n", "cat.png", "image/png"))
    assert pdf.content_type == "application/pdf"
    assert pdf.name == "cat.png.pdf"  # opened for what it is, not for what its name claims
    text = do_upload(uploader=alice, file=files.upload(b"just some notes\n", "notes.txt", "image/png"))
    assert (text.content_type, text.width, text.thumbnail_name) == ("text/plain", None, "")


def test_a_thumbnail_is_re_encoded_upright_and_keeps_no_exif(chat, media_root):
    alice, _bob, _group = chat
    row = do_upload(uploader=alice, file=files.upload(files.jpeg_with_gps(120, 80), "spy.jpg"))
    assert (row.width, row.height) == (120, 80)
    thumbnail_bytes = (media_root / row.thumbnail_name).read_bytes()
    with Image.open(io.BytesIO(thumbnail_bytes)) as thumbnail:
        assert thumbnail.size == (80, 120)  # turned as the camera said
        assert not thumbnail.getexif()
        assert "exif" not in thumbnail.info
    assert b"SpyCam" not in thumbnail_bytes


def test_an_animated_gif_gets_a_still_thumbnail(chat):
    alice, _bob, _group = chat
    row = do_upload(uploader=alice, file=files.upload(files.animated_gif(), "wave.gif"))
    assert (row.content_type, row.width, row.height) == ("image/gif", 30, 20) and row.thumbnail_name


@pytest.mark.parametrize("content, why", [
    (files.png_bomb(), "ten gigapixels claimed by a few hundred bytes"),
    (files.png_bomb(9000, 9000), "81 megapixels, past Pillow's own limit"),
])
def test_a_decompression_bomb_is_refused_as_invalid_having_cost_only_its_header(chat, media_root, content, why):
    alice, _bob, _group = chat
    with pytest.raises(Invalid, match="too many pixels"):
        do_upload(uploader=alice, file=files.upload(content, "bomb.png"))
    assert stored_files(media_root) == set() and not Attachment.objects.exists()


def test_an_image_just_over_the_pixel_setting_is_refused_and_one_within_it_is_kept(chat, settings):
    alice, _bob, _group = chat
    settings.PARLEY_UPLOAD_MAX_IMAGE_PIXELS = 10_000
    with pytest.raises(Invalid, match="too many pixels"):
        do_upload(uploader=alice, file=files.upload(files.png(101, 100), "big.png"))
    assert do_upload(uploader=alice, file=files.upload(files.png(100, 100), "ok.png")).width == 100


def test_a_damaged_image_is_invalid_and_nothing_is_stored(chat, media_root):
    alice, _bob, _group = chat
    truncated = files.png(200, 200)[:60]
    with pytest.raises(Invalid):
        do_upload(uploader=alice, file=files.upload(truncated, "broken.png"))
    assert stored_files(media_root) == set()


def test_types_off_the_allow_list_are_invalid(chat, settings):
    alice, _bob, _group = chat
    for content in (files.SVG_WITH_SCRIPT, files.HTML_PAGE, b"\x7fELF\x02\x01\x01" + b"\x00" * 60):
        with pytest.raises(Invalid, match="not allowed"):
            do_upload(uploader=alice, file=files.upload(content, "x.png", "image/png"))
    settings.PARLEY_UPLOAD_ALLOWED_TYPES = ["image/*"]
    assert do_upload(uploader=alice, file=files.upload(files.SVG_WITH_SCRIPT, "x.svg")).content_type == "image/svg+xml"


def test_size_quota_and_rate_limits_refuse_before_anything_is_stored(chat, settings, media_root):
    alice, _bob, _group = chat
    settings.PARLEY_UPLOAD_MAX_BYTES = 100
    with pytest.raises(TooLarge):
        do_upload(uploader=alice, file=files.upload(b"x" * 101, "big.txt"))
    with pytest.raises(Invalid, match="empty"):
        do_upload(uploader=alice, file=files.upload(b"", "empty.txt"))
    settings.PARLEY_UPLOAD_QUOTA_BYTES = 150
    do_upload(uploader=alice, file=files.upload(b"a" * 100, "one.txt"))
    with pytest.raises(TooLarge, match="quota"):
        do_upload(uploader=alice, file=files.upload(b"b" * 60, "two.txt"))
    settings.PARLEY_UPLOAD_QUOTA_BYTES = 0
    settings.PARLEY_RATE_UPLOAD = "2/m"
    cache.clear()
    do_upload(uploader=alice, file=files.upload(b"three", "three.txt"))
    do_upload(uploader=alice, file=files.upload(b"four", "four.txt"))
    with pytest.raises(RateLimited):
        do_upload(uploader=alice, file=files.upload(b"five", "five.txt"))
    assert len(stored_files(media_root)) == 3


def test_uploading_to_a_conversation_you_are_not_in_is_not_found(chat, make_user):
    _alice, _bob, group = chat
    with pytest.raises(NotFound):
        do_upload(uploader=make_user(), file=files.upload(b"hi", "a.txt"), conversation_id=group.pk)


# --- Names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("hostile, shown", [
    ("../../etc/passwd", "passwd"),
    ("/etc/passwd", "passwd"),
    ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
    ("a\x00b.txt", "ab.txt"),
    ("\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc\uff0fpasswd", "passwd"),  # fullwidth dots and solidus
    ("invoice\u202egnp.exe", "invoicegnp.exe"),  # the right-to-left override that shows "exe.png"
    ("..", "file"),
    ("   .hidden", "hidden"),
    ("line\nbreak\r.txt", "linebreak.txt"),
])
def test_hostile_names_are_cleaned(hostile, shown):
    assert clean_name(hostile) == shown


@given(st.text(max_size=400))
def test_a_cleaned_name_is_never_a_path_a_hidden_file_or_control_characters(raw):
    name = clean_name(raw)
    assert name and len(name) <= attachments.NAME_MAX_LENGTH
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".")
    assert all(ch.isprintable() or ch == " " for ch in name)


def test_a_long_name_keeps_its_extension():
    name = clean_name("x" * 600 + ".jpeg")
    assert len(name) == 255 and name.endswith(".jpeg")


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/etc/passwd", "..\\..\\x", "\x00", "../" * 50 + "x",
                                     "\uff0e\uff0e\uff0fescape", "%2e%2e%2fescape"])
def test_no_name_writes_outside_the_storage_root(chat, media_root, hostile):
    alice, _bob, _group = chat
    before = {p for p in media_root.parent.rglob("*")}
    row = do_upload(uploader=alice, file=files.upload(b"payload", hostile))
    assert STORAGE_NAME.match(row.storage_name)
    created = {p for p in media_root.parent.rglob("*")} - before
    assert created and all(media_root in p.parents for p in created)
    assert "/" not in row.name and ".." not in row.name.split("/")


# --- Attaching ------------------------------------------------------------------------------------

def test_a_send_attaches_the_senders_uploads_in_order_and_the_message_shows_them(chat):
    alice, _bob, group = chat
    photo = do_upload(uploader=alice, file=files.upload(files.png(), "a.png"), conversation_id=group.pk)
    notes = do_upload(uploader=alice, file=files.upload(b"notes", "b.txt"))
    result = send(alice, group, attachments=[notes.pk, photo.pk], body="")
    shown = result.payload["attachments"]
    assert [a["id"] for a in shown] == [notes.pk, photo.pk]
    assert shown[1] == {"id": photo.pk, "name": "a.png", "size": photo.size, "content_type": "image/png",
                        "url": f"/api/v1/files/{photo.pk}", "thumbnail_url": f"/api/v1/files/{photo.pk}/thumbnail",
                        "width": 64, "height": 48}
    assert shown[0]["thumbnail_url"] is None and shown[0]["width"] is None
    assert result.payload["body"] == ""
    assert set(Attachment.objects.values_list("message_id", flat=True)) == {result.message.pk}
    assert Attachment.objects.get(pk=notes.pk).conversation_id == group.pk


def test_a_message_without_text_needs_attachments(chat):
    alice, _bob, group = chat
    with pytest.raises(Invalid):
        send(alice, group, body="  ")


@pytest.mark.parametrize("bad", ["1", [1.5], [True], [1, 1], list(range(1, 12)), {"id": 1}])
def test_malformed_attachment_lists_are_invalid(chat, bad):
    alice, _bob, group = chat
    with pytest.raises(Invalid):
        send(alice, group, attachments=bad)


def test_only_your_own_unsent_uploads_for_this_conversation_can_be_attached_and_a_refusal_burns_no_seq(
        chat, make_group):
    alice, bob, group = chat
    bobs = do_upload(uploader=bob, file=files.upload(b"bob's", "b.txt"))
    elsewhere = do_upload(uploader=alice, file=files.upload(b"other", "o.txt"),
                          conversation_id=make_group(alice, [], title="other").pk)
    sent = do_upload(uploader=alice, file=files.upload(b"sent", "s.txt"))
    send(alice, group, key="first", attachments=[sent.pk])
    for ids in ([bobs.pk], [elsewhere.pk], [sent.pk], [999_999]):
        with pytest.raises(Invalid, match="your own uploads"):
            send(alice, group, key=f"try-{ids}", attachments=ids)
    group.refresh_from_db()
    assert group.last_seq == 1


def test_a_retry_returns_the_stored_message_and_attaches_nothing_twice(chat):
    alice, _bob, group = chat
    upload = do_upload(uploader=alice, file=files.upload(b"once", "once.txt"))
    first = send(alice, group, attachments=[upload.pk])
    again = send(alice, group, attachments=[upload.pk])
    assert again.duplicate and again.payload["id"] == first.payload["id"]
    assert again.payload["attachments"] == first.payload["attachments"]
    assert Attachment.objects.filter(message=first.message).count() == 1
    other = do_upload(uploader=alice, file=files.upload(b"other", "other.txt"))
    with pytest.raises(Conflict):
        send(alice, group, attachments=[other.pk])
    with pytest.raises(Conflict):
        send(alice, group, attachments=None)
    assert Attachment.objects.get(pk=other.pk).message_id is None


# --- Who may fetch a file ----------------------------------------------------------------------------

def test_members_may_fetch_a_sent_file_and_no_one_else(chat, make_user):
    alice, bob, group = chat
    upload = do_upload(uploader=alice, file=files.upload(files.png(), "a.png"))
    assert attachments.access_file(alice, upload.pk).storage_name == upload.storage_name
    with pytest.raises(NotFound):
        attachments.access_file(bob, upload.pk)  # not sent yet: the uploader's alone
    send(alice, group, attachments=[upload.pk])
    assert attachments.access_file(bob, upload.pk, thumbnail=True).content_type == "image/webp"
    with pytest.raises(NotFound):
        attachments.access_file(make_user(), upload.pk)
    do_remove_member(actor=alice, conversation_id=group.pk, user_id=bob.pk)
    with pytest.raises(NotFound):
        attachments.access_file(bob, upload.pk)


# --- Files go with their message ---------------------------------------------------------------------

@pytest.fixture
def sent_photo(chat, media_root):
    alice, bob, group = chat
    upload = do_upload(uploader=alice, file=files.upload(files.png(), "a.png"))
    message = send(alice, group, attachments=[upload.pk]).message
    assert len(stored_files(media_root)) == 2
    return alice, bob, message


def test_deleting_a_message_deletes_its_files_and_rows(sent_photo, media_root, django_capture_on_commit_callbacks):
    alice, _bob, message = sent_photo
    with django_capture_on_commit_callbacks(execute=True):
        payload = do_delete_message(actor=alice, message_id=message.pk)
    assert payload["attachments"] == []
    assert stored_files(media_root) == set() and not Attachment.objects.exists()
    assert Message.objects.get(pk=message.pk).attachments == []


def test_a_moderators_removal_deletes_the_files_too(sent_photo, media_root, make_moderator,
                                                    django_capture_on_commit_callbacks):
    _alice, bob, message = sent_photo
    flag = do_flag_message(reporter=bob, message_id=message.pk, reason="abuse")
    with django_capture_on_commit_callbacks(execute=True):
        do_resolve_flag(moderator=make_moderator(), flag_id=flag.pk, action="remove_message")
    assert stored_files(media_root) == set() and not Attachment.objects.exists()


def test_a_discarded_file_is_never_served_even_before_its_purge(sent_photo):
    alice, bob, message = sent_photo
    do_delete_message(actor=alice, message_id=message.pk)  # on-commit purge not run (the test's transaction)
    assert Attachment.objects.filter(discarded_at__isnull=False).exists()
    with pytest.raises(NotFound):
        attachments.access_file(bob, Attachment.objects.get().pk)


def test_a_purge_the_storage_failed_is_retried_by_the_sweep(sent_photo, media_root, monkeypatch,
                                                            django_capture_on_commit_callbacks):
    alice, _bob, message = sent_photo
    real_delete = attachments.storage().delete
    monkeypatch.setattr(type(attachments.storage()), "delete", lambda self, name: (_ for _ in ()).throw(OSError("down")))
    with django_capture_on_commit_callbacks(execute=True):
        do_delete_message(actor=alice, message_id=message.pk)
    assert len(stored_files(media_root)) == 2 and Attachment.objects.count() == 1
    monkeypatch.setattr(type(attachments.storage()), "delete", lambda self, name: real_delete(name))
    assert sweep() == 1
    assert stored_files(media_root) == set() and not Attachment.objects.exists()


def test_the_sweep_deletes_uploads_never_attached_after_the_orphan_age_and_nothing_else(
        chat, settings, media_root):
    alice, _bob, group = chat
    settings.PARLEY_UPLOAD_ORPHAN_SECONDS = 3600
    orphan = do_upload(uploader=alice, file=files.upload(files.png(), "orphan.png"))
    sent = do_upload(uploader=alice, file=files.upload(b"kept", "kept.txt"))
    send(alice, group, attachments=[sent.pk])
    assert sweep(now=timezone.now() + timedelta(seconds=3500)) == 0
    fresh = do_upload(uploader=alice, file=files.upload(b"fresh", "fresh.txt"))
    Attachment.objects.filter(pk=fresh.pk).update(created_at=timezone.now() + timedelta(seconds=3000))
    assert sweep(now=timezone.now() + timedelta(seconds=3700)) == 1
    assert set(Attachment.objects.values_list("pk", flat=True)) == {sent.pk, fresh.pk}
    assert stored_files(media_root) == {sent.storage_name, fresh.storage_name}
    with pytest.raises(Invalid):  # too late to send it
        send(alice, group, key="late", attachments=[orphan.pk])


def test_the_sweep_runs_as_a_beat_task(chat, settings):
    from messaging.tasks import sweep_uploads

    assert settings.CELERY_BEAT_SCHEDULE["parley.bulk.sweep_uploads"]["task"] == sweep_uploads.name
    settings.PARLEY_UPLOAD_ORPHAN_SECONDS = 0
    alice, _bob, _group = chat
    do_upload(uploader=alice, file=files.upload(b"old notes", "x.txt"))
    Attachment.objects.update(created_at=timezone.now() - timedelta(seconds=5))
    assert sweep_uploads.apply().get() == 1


def test_taking_back_an_upload_deletes_it_and_only_the_uploader_can(chat, media_root,
                                                                   django_capture_on_commit_callbacks):
    alice, bob, group = chat
    upload = do_upload(uploader=alice, file=files.upload(b"oops", "oops.txt"))
    with pytest.raises(NotFound):
        attachments.do_discard_upload(uploader=bob, attachment_id=upload.pk)
    with django_capture_on_commit_callbacks(execute=True):
        attachments.do_discard_upload(uploader=alice, attachment_id=upload.pk)
    assert stored_files(media_root) == set()
    kept = do_upload(uploader=alice, file=files.upload(b"kept", "kept.txt"))
    send(alice, group, attachments=[kept.pk])
    with pytest.raises(Invalid):
        attachments.do_discard_upload(uploader=alice, attachment_id=kept.pk)

