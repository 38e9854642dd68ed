"""The app is installable (issue 13 item 4): every page links a web app manifest whose icons
exist at the sizes it states (192, 512 and a maskable 512), PNGs drawn by tools/make_icons.py."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_the_manifest_names_the_app_and_icons_that_exist_at_their_sizes():
    manifest_path = Path(finders.find("parley/manifest.webmanifest"))
    manifest = json.loads(manifest_path.read_text())
    assert (manifest["name"], manifest["start_url"], manifest["display"]) == ("Parley", "/", "standalone")
    icons = {(icon["sizes"], icon["purpose"]): manifest_path.parent / icon["src"] for icon in manifest["icons"]}
    assert set(icons) == {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")}
    for (sizes, _purpose), path in icons.items():
        width, height = (int(n) for n in sizes.split("x"))
        assert png_size(path) == (width, height)
    assert png_size(Path(finders.find("parley/icons/apple-touch-icon.png"))) == (180, 180)


@pytest.mark.parametrize("path", ["/login", "/signup"])
def test_pages_link_the_manifest_and_the_touch_icon(client, path):
    page = client.get(path).content.decode()
    assert 'rel="manifest" href="/static/parley/manifest.webmanifest"' in page
    assert 'rel="apple-touch-icon" href="/static/parley/icons/apple-touch-icon.png"' in page
