"""Uploads and attachments (CONTRACT v1.1, "Attachments"; docs/architecture.md, "Files").

The life of a file, each step here and nowhere else:

1. :func:`do_upload` checks what a user sent (size, quota, rate, the type *detected from the
   bytes*, images decoded within a pixel budget) and stores it through Django's storage API
   under a name the server makes (a UUID): no part of the uploader's file name ever reaches
   the storage. An image gets a thumbnail, re-encoded, so no metadata (EXIF) survives in it.
   The upload is its uploader's alone.
2. A send (messaging.send) attaches the uploader's own unattached uploads with
   :func:`take_for_send` and :func:`attach`, inside its transaction; the message row keeps a
   summary (``Message.attachments``), so building a payload costs no query.
3. :func:`access_file` answers who may fetch a file: the conversation's members while the
   message is visible, the uploader alone before it is sent; everyone else gets NotFound.
4. Deleting or removing the message (messaging.changes.withdraw_text) discards its files:
   marked in that transaction, their storage objects and rows deleted after commit
   (:func:`purge`). The beat sweep (:func:`sweep`) discards uploads never attached within
   ``PARLEY_UPLOAD_ORPHAN_SECONDS`` and retries any purge that failed.

Prefixes as everywhere in the core: ``check_*`` validates untrusted input, ``access_*``
authorizes, ``do_*`` changes state.
"""
from __future__ import annotations

import logging
import mimetypes
import os
import unicodedata
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from io import BytesIO
from typing import IO, Any

import magic
from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone
from PIL import Image, ImageOps, UnidentifiedImageError

from . import ratelimit
from .access import access_membership, as_id, require_not_suspended
from .checks import is_json_int
from .errors import Invalid, NotFound, TooLarge
from .models import Attachment, Membership, Message, User
from .payloads import AttachmentPayload, AttachmentSummary, attachment_payload

logger = logging.getLogger(__name__)

STORAGE_ALIAS = "attachments"  # settings.STORAGES
# The raster formats Pillow decodes here and browsers show inline. Any other type is served
# as a download, whatever it is.
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
INLINE_TYPES = frozenset(IMAGE_FORMATS.values())
THUMBNAIL_TYPE = "image/webp"
NAME_MAX_LENGTH = 255
# libmagic needs only the start of a file to name its type.
_SNIFF_BYTES = 64 * 1024
_PURGE_BATCH = 500


def storage() -> Storage:
    return storages[STORAGE_ALIAS]


# --- check_* ---------------------------------------------------------------------------------

def clean_name(raw: Any) -> str:
    """The uploader's file name made safe to show and to offer as a download name.

    Only ever used for display and ``Content-Disposition`` (the storage name is a UUID), and
    still cleaned: Unicode compatibility forms folded (a fullwidth solidus becomes ``/``),
    any directory part dropped, control and format characters removed (NUL, newlines, the
    right-to-left override that makes ``exe.png`` of ``gnp.exe``, zero-width characters),
    whitespace collapsed, leading dots stripped (no hidden files), at most 255 characters
    with the extension kept.
    """
    text = unicodedata.normalize("NFKC", raw if isinstance(raw, str) else "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = " ".join(text.split()).lstrip(". ").rstrip(" ")
    if len(text) > NAME_MAX_LENGTH:
        stem, ext = os.path.splitext(text)
        ext = ext[:16]
        text = stem[:NAME_MAX_LENGTH - len(ext)].rstrip() + ext
    return text or "file"


def name_for_type(name: str, content_type: str) -> str:
    """``name`` with an extension that fits the detected type appended if its own does not
    (``notes.exe`` holding text becomes ``notes.exe.txt``): a download is opened for what it
    is, not for what its name claims. Types the system's tables do not know keep the name."""
    known = mimetypes.guess_all_extensions(content_type)
    if not known or os.path.splitext(name)[1].lower() in known:
        return name
    preferred = mimetypes.guess_extension(content_type) or known[0]
    return clean_name(name[:NAME_MAX_LENGTH - len(preferred)] + preferred)


def is_allowed_type(content_type: str) -> bool:
    """On PARLEY_UPLOAD_ALLOWED_TYPES: an exact type, or a family written ``type/*``."""
    family = content_type.split("/", 1)[0] + "/*"
    allowed = settings.PARLEY_UPLOAD_ALLOWED_TYPES
    return content_type in allowed or family in allowed


@dataclass(frozen=True)
class ImageFacts:
    content_type: str
    width: int
    height: int
    thumbnail: bytes


def _image_too_large() -> Invalid:
    limit = settings.PARLEY_UPLOAD_MAX_IMAGE_PIXELS
    return Invalid("the image has too many pixels",
                   fields={"file": [f"Images may have at most {limit:,} pixels."]})


def inspect_image(file: IO[bytes]) -> ImageFacts | None:
    """Decode an image of the inline formats and make its thumbnail, or None if the bytes are
    none of those formats (another check then names their type).

    The decompression-bomb guard: Pillow's ``MAX_IMAGE_PIXELS`` is set from
    ``PARLEY_UPLOAD_MAX_IMAGE_PIXELS`` and its warning made an error, and the header's size is
    checked before anything is decoded, so an image that would expand past the budget is
    refused with Invalid having cost only its header. A damaged image is Invalid too.
    """
    limit = settings.PARLEY_UPLOAD_MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    size = settings.PARLEY_UPLOAD_THUMBNAIL_SIZE
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            file.seek(0)
            with Image.open(file, formats=list(IMAGE_FORMATS)) as probe:
                image_format, (width, height) = probe.format, probe.size
                if width * height > limit:
                    raise _image_too_large()
                probe.verify()
            file.seek(0)
            with Image.open(file, formats=[image_format or "PNG"]) as image:
                image.draft("RGB", (size, size))  # JPEG decodes at a reduced scale: less memory
                upright = ImageOps.exif_transpose(image)  # as the camera held it; a new image
                upright.thumbnail((size, size))
                alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
                out = BytesIO()
                # Saved without exif, icc or text chunks: the thumbnail carries pixels only.
                upright.convert("RGBA" if alpha else "RGB").save(out, format="WEBP", quality=80)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _image_too_large() from None
        except UnidentifiedImageError:
            return None
        except Invalid:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
            raise Invalid("the image could not be read", fields={"file": [f"A damaged image ({error})."]}) from None
    assert image_format is not None
    return ImageFacts(IMAGE_FORMATS[image_format], width, height, out.getvalue())


def detect_type(file: IO[bytes]) -> str:
    """The content type named by the bytes (libmagic), never by the client's header or name."""
    file.seek(0)
    head = file.read(_SNIFF_BYTES)
    file.seek(0)
    if not head:
        return "application/x-empty"
    return str(magic.from_buffer(head, mime=True)) or "application/octet-stream"


# --- do_upload -------------------------------------------------------------------------------

def _require_quota(uploader: User, size: int) -> None:
    quota = settings.PARLEY_UPLOAD_QUOTA_BYTES
    if not quota:
        return
    used = (Attachment.objects.filter(uploader=uploader, discarded_at__isnull=True)
            .aggregate(total=Sum("size"))["total"] or 0)
    if used + size > quota:
        raise TooLarge("this file would take you past your storage quota",
                       fields={"file": [f"Each user may keep {quota:,} bytes of files; you keep {used:,}."]})


def check_upload_size(size: int) -> None:
    limit = settings.PARLEY_UPLOAD_MAX_BYTES
    if size > limit:
        raise TooLarge("the file is too large", fields={"file": [f"Files are limited to {limit:,} bytes."]})
    if size <= 0:
        raise Invalid("the file is empty", fields={"file": ["The file is empty."]})


def do_upload(*, uploader: User, file: File, name: Any = None, conversation_id: Any = None) -> Attachment:
    """Store an upload for ``uploader`` to attach to a message later.

    With ``conversation_id`` the upload may go only to that conversation, which must be one
    of the uploader's (NotFound otherwise, as for anything of a conversation one is not in).
    Refused: over PARLEY_UPLOAD_MAX_BYTES or the quota (TooLarge), over PARLEY_RATE_UPLOAD
    (RateLimited), of a type not allowed, or an image that is damaged or has too many pixels
    (Invalid). Nothing is stored when refused.
    """
    require_not_suspended(uploader)
    conversation = access_membership(uploader, conversation_id).conversation if conversation_id is not None else None
    size = int(file.size or 0)
    check_upload_size(size)
    ratelimit.enforce(ratelimit.UPLOAD, uploader.pk, user=uploader)
    _require_quota(uploader, size)

    image = inspect_image(file)
    content_type = image.content_type if image else detect_type(file)
    if content_type in INLINE_TYPES and image is None:
        # Named an image by its bytes, yet not one Pillow decodes: never serve it inline.
        raise Invalid("the image could not be read", fields={"file": ["A damaged image."]})
    if not is_allowed_type(content_type):
        raise Invalid("this type of file is not allowed",
                      fields={"file": [f"Files of type {content_type} are not allowed here."]})

    key = uuid.uuid4().hex
    files = storage()
    file.seek(0)
    stored = files.save(f"{key[:2]}/{key}", file)
    thumbnail = ""
    try:
        if image is not None:
            thumbnail = files.save(f"{key[:2]}/{key}-thumb.webp", ContentFile(image.thumbnail))
        return Attachment.objects.create(
            uploader=uploader, conversation=conversation, storage_name=stored, thumbnail_name=thumbnail,
            name=name_for_type(clean_name(name if name is not None else file.name), content_type),
            content_type=content_type, size=size,
            width=image.width if image else None, height=image.height if image else None,
        )
    except BaseException:
        _delete_stored(stored, thumbnail)
        raise


def upload_payload(attachment: Attachment) -> AttachmentPayload:
    """The upload as the API answers it: the contract's ``{id, name, size, content_type}``
    and the rest of what a message will show (the URLs serve the uploader alone until sent)."""
    return attachment_payload(summary(attachment))


def summary(attachment: Attachment) -> AttachmentSummary:
    return {"id": attachment.pk, "name": attachment.name, "size": attachment.size,
            "content_type": attachment.content_type, "width": attachment.width, "height": attachment.height,
            "thumbnail": bool(attachment.thumbnail_name)}


def do_discard_upload(*, uploader: User, attachment_id: Any) -> None:
    """The uploader drops an upload not sent yet (a file taken back from the composer).
    Anyone else's, or an unknown one, is NotFound; an attached one is Invalid (delete the
    message instead)."""
    pk = as_id(attachment_id)
    row = (Attachment.objects.filter(pk=pk, uploader=uploader, discarded_at__isnull=True).first()
           if pk is not None else None)
    if row is None:
        raise NotFound("upload not found")
    if row.message_id is not None:
        raise Invalid("this file belongs to a message; delete the message to delete it")
    with transaction.atomic():
        if Attachment.objects.filter(pk=row.pk, message__isnull=True).update(discarded_at=timezone.now()):
            transaction.on_commit(partial(purge, [row.pk]))


# --- Sending ---------------------------------------------------------------------------------

def check_attachment_ids(value: Any) -> list[int]:
    """The ``attachments`` of a send: a list of distinct upload ids, at most
    PARLEY_MAX_ATTACHMENTS_PER_MESSAGE, in the order the message shows them."""
    if value is None:
        return []
    limit = settings.PARLEY_MAX_ATTACHMENTS_PER_MESSAGE
    if not isinstance(value, list) or not all(is_json_int(v) and v > 0 for v in value):
        raise Invalid("attachments must be a list of upload ids", fields={"attachments": ["A list of upload ids."]})
    if len(value) > limit:
        raise Invalid("too many attachments", fields={"attachments": [f"At most {limit} files per message."]})
    if len(set(value)) != len(value):
        raise Invalid("an upload is listed twice", fields={"attachments": ["Each upload at most once."]})
    return list(value)


def take_for_send(*, sender: User, conversation_id: int, ids: list[int]) -> list[AttachmentSummary]:
    """Inside the storing transaction: lock the uploads a send attaches and return their
    summaries in the order given, or Invalid unless every one is the sender's own, not yet
    attached (nor discarded), and free to go to this conversation.

    The row locks make two sends of one upload queue up: the second, once the first commits,
    no longer finds it unattached and rolls back (taking no seq). Lock order: these before
    the conversation row (the send's one-statement store takes it next); deletions lock only
    attached uploads, so they never wait on these.
    """
    rows = {row.pk: row for row in Attachment.objects.select_for_update().filter(
        Q(conversation__isnull=True) | Q(conversation_id=conversation_id),
        pk__in=ids, uploader=sender, message__isnull=True, discarded_at__isnull=True)}
    missing = [pk for pk in ids if pk not in rows]
    if missing:
        raise Invalid("attachments must be your own uploads, not sent yet",
                      fields={"attachments": [f"Not uploads of yours that can be sent here: {missing}"]})
    return [summary(rows[pk]) for pk in ids]


def attach(message: Message, ids: list[int]) -> None:
    """Bind the uploads taken by :func:`take_for_send` to the message just stored."""
    if ids:
        Attachment.objects.filter(pk__in=ids).update(message=message, conversation_id=message.conversation_id)


def attached_ids(message: Message) -> list[int]:
    return [a["id"] for a in message.attachments]


# --- Deleting --------------------------------------------------------------------------------

def discard_message_files(message: Message) -> None:
    """A deleted or removed message's files go with its text: discarded in the caller's
    transaction (from then on never served), deleted from the storage and the table after
    commit. Costs no query for a message without files (its row's summary says so)."""
    if not message.attachments:
        return
    ids = list(Attachment.objects.filter(message=message, discarded_at__isnull=True).values_list("pk", flat=True))
    if ids:
        Attachment.objects.filter(pk__in=ids).update(discarded_at=timezone.now())
        transaction.on_commit(partial(purge, ids))


def _delete_stored(*names: str) -> None:
    files = storage()
    for name in names:
        if name:
            files.delete(name)


def purge(ids: list[int] | None = None, *, limit: int = _PURGE_BATCH) -> int:
    """Delete discarded files from the storage, then their rows (``ids``, or any discarded);
    returns how many went. A storage that fails keeps the row, and the next sweep tries again."""
    rows = Attachment.objects.filter(discarded_at__isnull=False).order_by("pk")
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    gone = []
    for row in rows[:limit]:
        try:
            _delete_stored(row.storage_name, row.thumbnail_name)
        except Exception:  # noqa: BLE001 - a storage outage: the sweep retries
            logger.warning("could not delete the files of attachment %s", row.pk, exc_info=True)
            continue
        gone.append(row.pk)
    Attachment.objects.filter(pk__in=gone).delete()
    return len(gone)


def sweep(*, now: datetime | None = None) -> int:
    """The beat task's work: discard uploads never attached within PARLEY_UPLOAD_ORPHAN_SECONDS,
    then purge what is discarded (a bounded batch per run). Returns the number of files deleted.

    An orphan being attached while this runs is safe either way: the send locks it and
    attaches it only while it is not discarded, and this discards it only while unattached.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.PARLEY_UPLOAD_ORPHAN_SECONDS)
    Attachment.objects.filter(message__isnull=True, discarded_at__isnull=True,
                              created_at__lt=cutoff).update(discarded_at=timezone.now())
    return purge()


# --- access_file -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ServedFile:
    """What the file view needs to answer: the storage object and how to present it."""

    storage_name: str
    content_type: str
    download_name: str
    inline: bool


def access_file(user: User | Any, attachment_id: Any, *, thumbnail: bool = False) -> ServedFile:
    """A file the user may fetch, or NotFound, exactly alike for a file that does not exist.

    Checked on every request: a member of the message's conversation while the message is
    visible; before it is sent, the uploader alone (while still a member of the conversation
    it is bound to). Logged out, an outsider, a removed member, a deleted or removed message:
    NotFound. Only the inline image types are ever shown inline; all else is a download.
    """
    pk = as_id(attachment_id)
    row = (Attachment.objects.select_related("message").filter(pk=pk, discarded_at__isnull=True).first()
           if pk is not None and getattr(user, "is_authenticated", False) else None)
    if row is None or not _may_fetch(user, row) or (thumbnail and not row.thumbnail_name):
        raise NotFound("file not found")
    if thumbnail:
        stem = os.path.splitext(row.name)[0] or "file"
        return ServedFile(row.thumbnail_name, THUMBNAIL_TYPE, f"{stem}-thumbnail.webp", inline=True)
    return ServedFile(row.storage_name, row.content_type, row.name, inline=row.content_type in INLINE_TYPES)


def _may_fetch(user: User, row: Attachment) -> bool:
    if row.message is None:
        conversation_id = row.conversation_id
        if row.uploader_id != user.pk:
            return False
    else:
        conversation_id = row.message.conversation_id
        if row.message.is_removed:
            return False
    return conversation_id is None or Membership.objects.filter(conversation_id=conversation_id, user=user).exists()
