"""Files to upload in tests, made on the spot: images (with EXIF, animated, a decompression
bomb), polyglots and hostile markup."""
from __future__ import annotations

import io
import struct
import zlib

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image


def png(width: int = 64, height: int = 48, color=(200, 30, 30), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), color if mode != "1" else 0).save(out, format="PNG")
    return out.getvalue()


def jpeg_with_gps(width: int = 120, height: int = 80) -> bytes:
    """A JPEG whose EXIF says where it was taken and that it was held sideways."""
    image = Image.new("RGB", (width, height), (10, 120, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° to show
    exif[0x010F] = "SpyCam"  # Make
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}  # GPSInfo
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("P", (30, 20), i) for i in (1, 2, 3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG of a few hundred bytes whose header claims width × height pixels (10 gigapixels
    by default: 30 GB once decoded). Its data is a few rows of zeros; only a decoder that
    trusts the header before counting would try to allocate it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = zlib.compress(b"\x00" * (1 + 3 * min(width, 1000)) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def png_html_polyglot() -> bytes:
    """A valid PNG that also carries an HTML page with a script (in a tEXt chunk): a browser
    sniffing it as HTML would run the script."""
    image = png(8, 8)
    payload = b"Comment\x00<html><body><script>alert(document.cookie)</script></body></html>"
    end = image.rindex(b"IEND") - 4
    return image[:end] + _chunk(b"tEXt", payload) + image[end:]


def pdf_html_polyglot() -> bytes:
    return (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n<html><script>alert(1)</script></html>\n"
            b"1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")


SVG_WITH_SCRIPT = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                   b'<script>alert(document.domain)</script><rect width="10" height="10"/></svg>')
HTML_PAGE = b"<!DOCTYPE html><html><head><title>x</title></head><body><script>alert(1)</script></body></html>"


def upload(content: bytes, name: str = "file.bin", content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    """As Django hands a view an uploaded file. The declared type is the client's word, which
    Parley ignores."""
    return SimpleUploadedFile(name, content, content_type=content_type)
