"""Generate a VAPID key pair (RFC 8292) for Web Push, as environment lines.

    manage.py vapid_keys                         # print the three lines
    manage.py vapid_keys --subject mailto:ops@example.com --output .env.push

The public key is what browsers subscribe with (``applicationServerKey``), the private key
signs every push. Keep the private key secret; replacing the pair invalidates every stored
subscription (push services refuse pushes signed by another key), so generate it once per
deployment. See docs/notifications.md.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from notifications.vapid import generate_vapid_keys

# RFC 8292 asks for a way to reach the sender: a mailto: or an https: URL.
_SUBJECT = re.compile(r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$")


class Command(BaseCommand):
    help = "Generate VAPID keys for Web Push and print them as PARLEY_VAPID_* environment lines."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--subject", default="mailto:admin@localhost",
                            help="How push services can reach you: mailto:you@example.com or an https URL.")
        parser.add_argument("--output", type=Path,
                            help="Also write the lines to this file (created readable by you alone).")
        parser.add_argument("--force", action="store_true", help="Overwrite the --output file if it exists.")

    def handle(self, *args, subject: str, output: Path | None, force: bool, **options) -> None:
        if not _SUBJECT.match(subject):
            raise CommandError("--subject must be a mailto: address or an https:// URL")
        keys = generate_vapid_keys()
        public, private = keys.public, keys.private
        lines = (f"PARLEY_VAPID_PUBLIC_KEY={public}\n"
                 f"PARLEY_VAPID_PRIVATE_KEY={private}\n"
                 f"PARLEY_VAPID_SUBJECT={subject}\n")
        if output is not None:
            self._write(output, lines, force=force)
        self.stdout.write(lines, ending="")

    def _write(self, path: Path, text: str, *, force: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
        try:
            descriptor = os.open(path, flags, 0o600)
        except FileExistsError:
            raise CommandError(f"{path} exists; pass --force to replace its keys "
                               "(every stored push subscription stops working)") from None
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        self.stderr.write(f"Wrote {path} (mode 600).")
