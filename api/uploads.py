"""Uploads and the files of messages (CONTRACT v1.1, "Attachments").

``POST /uploads`` stores a file for a later send; ``GET /files/{id}`` (and ``/thumbnail``)
serves it to whoever messaging.attachments.access_file lets see it, on every request, and
answers 404 to everyone else, logged out included. What is checked and why is in the core;
this edge bounds the request body while it arrives and sets the headers that keep a served
file inert in a browser.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Iterator
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files.base import File
from django.core.files.uploadhandler import (
    FileUploadHandler,
    MemoryFileUploadHandler,
    TemporaryFileUploadHandler,
)
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging import attachments
from messaging.errors import NotFound

from .common import AUTH_ERRORS, AuthenticatedRequest, E, id_param
from .fields import parse
from .parsers import RequestTooLarge
from .serializers import AttachmentSerializer, UploadSerializer

ATTACHMENT_ID = id_param("attachment_id", "upload")
# Multipart framing around the file (boundaries, part headers, the other fields) is small;
# a body declaring more than the file limit plus this is refused before it is read.
_MULTIPART_OVERHEAD = 64 * 1024
_CHUNK = 64 * 1024
# A served file can do nothing in a browser: no script, no plugin, no same-origin rights
# (sandbox), no subresource of its own; other sites cannot embed it.
FILE_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
}


class _UploadLimit(FileUploadHandler):
    """Counts the bytes of every file of the request as they arrive and stops the upload past
    PARLEY_UPLOAD_MAX_BYTES (413), so no request, chunked or lying about its length, can
    write more than that to memory or disk. Passes the data on to Django's own handlers."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        limit = settings.PARLEY_UPLOAD_MAX_BYTES
        if self.received > limit:
            raise RequestTooLarge(f"Files are limited to {limit} bytes.")
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


class UploadsView(APIView):
    parser_classes = [MultiPartParser]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before anything reads the body: the CSRF check of a session parses it too.
        declared = request.META.get("CONTENT_LENGTH")
        if declared and str(declared).isdigit() and int(declared) > settings.PARLEY_UPLOAD_MAX_BYTES + _MULTIPART_OVERHEAD:
            raise RequestTooLarge(f"Files are limited to {settings.PARLEY_UPLOAD_MAX_BYTES} bytes.")
        django_request = request._request
        django_request.upload_handlers = [_UploadLimit(django_request), MemoryFileUploadHandler(django_request),
                                          TemporaryFileUploadHandler(django_request)]
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="uploads_create", request={"multipart/form-data": UploadSerializer},
        responses={201: AttachmentSerializer, 400: E, 404: E, 413: E, 415: E, 429: E, **AUTH_ERRORS},
        description="Upload one file (multipart, field `file`) to attach to a message later; it is yours alone "
                    "until a send attaches it. Over PARLEY_UPLOAD_MAX_BYTES (25 MiB) or your quota: 413; a type "
                    "not on PARLEY_UPLOAD_ALLOWED_TYPES (detected from the bytes), a damaged image or one over "
                    "PARLEY_UPLOAD_MAX_IMAGE_PIXELS: 400; over PARLEY_RATE_UPLOAD: 429. `conversation`, if given, "
                    "must be yours (404).",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        data = parse(UploadSerializer, request.data)
        upload: File = data["file"]
        attachment = attachments.do_upload(uploader=request.user, file=upload, name=upload.name,
                                           conversation_id=data.get("conversation"))
        return Response(attachments.upload_payload(attachment), status=status.HTTP_201_CREATED)


class UploadView(APIView):
    @extend_schema(
        operation_id="uploads_discard", parameters=[ATTACHMENT_ID], request=None,
        responses={204: None, 400: E, 404: E, **AUTH_ERRORS},
        description="Take back an upload of yours that no message holds yet (the file is deleted). An attached "
                    "one is a 400: delete its message instead.",
    )
    def delete(self, request: AuthenticatedRequest, attachment_id: int) -> Response:
        attachments.do_discard_upload(uploader=request.user, attachment_id=attachment_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class _FileView(APIView):
    """Answers 404 to anyone who may not see the file, a visitor without credentials and one
    with bad credentials included: whether a file exists is nobody else's business."""

    permission_classes: list[Any] = []
    thumbnail = False

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            exc = NotFound("file not found")
        return super().handle_exception(exc)

    def get(self, request: Request, attachment_id: int) -> HttpResponseBase:
        served = attachments.access_file(request.user, attachment_id, thumbnail=self.thumbnail)
        return file_response(request._request, served)


_FILE_RESPONSES = {
    (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The file's bytes."),
    404: E,
}


class FileView(_FileView):
    @extend_schema(
        operation_id="files_get", parameters=[ATTACHMENT_ID], responses=_FILE_RESPONSES,
        description="A message's file, for the conversation's members (and an upload not sent yet, for its "
                    "uploader); 404 to everyone else, logged out included. Always `X-Content-Type-Options: "
                    "nosniff` and a sandboxing Content-Security-Policy; only PNG, JPEG, GIF and WebP images are "
                    "inline, everything else is `Content-Disposition: attachment`.",
    )
    def get(self, request: Request, attachment_id: int) -> HttpResponseBase:
        return super().get(request, attachment_id)


class ThumbnailView(_FileView):
    thumbnail = True

    @extend_schema(
        operation_id="files_thumbnail", parameters=[ATTACHMENT_ID], responses=_FILE_RESPONSES,
        description="An image's thumbnail (WebP, re-encoded without metadata), under the same rule as the file.",
    )
    def get(self, request: Request, attachment_id: int) -> HttpResponseBase:
        return super().get(request, attachment_id)


def file_response(request: HttpRequest, served: attachments.ServedFile) -> HttpResponseBase:
    """The file's answer: its body streamed from the storage, or handed to the front server
    (PARLEY_FILE_SERVE), with the headers that keep it inert either way."""
    mode = settings.PARLEY_FILE_SERVE
    response: HttpResponse | StreamingHttpResponse
    if mode == "x-accel-redirect":
        response = HttpResponse(content_type=served.content_type)
        response["X-Accel-Redirect"] = settings.PARLEY_FILE_ACCEL_PREFIX + quote(served.storage_name)
    elif mode == "x-sendfile":
        response = HttpResponse(content_type=served.content_type)
        response["X-Sendfile"] = attachments.storage().path(served.storage_name)
    else:
        try:
            body = attachments.storage().open(served.storage_name, "rb")
        except OSError:  # the row outlived its object (a storage restored from backup): as gone
            raise NotFound("file not found") from None
        chunks = _async_chunks(body) if isinstance(request, ASGIRequest) else _chunks(body)
        response = StreamingHttpResponse(chunks, content_type=served.content_type)
        if body.size is not None:
            response["Content-Length"] = str(body.size)
    response["Content-Disposition"] = content_disposition_header(not served.inline, served.download_name) or ""
    # Private: the answer depends on who asks. A file never changes under its id.
    response["Cache-Control"] = "private, max-age=86400"
    for name, value in FILE_SECURITY_HEADERS.items():
        response[name] = value
    return response


def _chunks(body: File) -> Iterator[bytes]:
    with body:
        while chunk := body.read(_CHUNK):
            yield chunk


async def _async_chunks(body: File) -> AsyncIterator[bytes]:
    # Under ASGI: read on a thread, so the event loop never waits for the disk or the network.
    read = sync_to_async(body.read, thread_sensitive=False)
    try:
        while chunk := await read(_CHUNK):
            yield chunk
    finally:
        await sync_to_async(body.close, thread_sensitive=False)()
