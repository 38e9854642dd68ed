"""Watch a Parley server as one device: ``manage.py parley_client --url http://127.0.0.1:8000
--username alice --password parley-demo`` prints every message it receives, resuming from
cursors across reconnects. ``--send CONVERSATION --body TEXT`` sends one message and exits."""
from __future__ import annotations

import asyncio
import json
import urllib.request

from django.core.management.base import BaseCommand

from ops.client import ParleyClient


def _post(url: str, payload: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Command(BaseCommand):
    help = "Connect to Parley as one device, print what arrives, or send a message."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", action="append", help="gateway base URL (repeat for several)")
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--send", type=int, metavar="CONVERSATION")
        parser.add_argument("--body", default="hello from parley_client")

    def handle(self, *args, **options) -> None:
        urls = options["url"] or ["http://127.0.0.1:8000"]
        token = _post(f"{urls[0]}/api/v1/auth/token", {"username": options["username"],
                                                         "password": options["password"]})["token"]
        device = _post(f"{urls[0]}/api/v1/devices", {"name": "parley_client", "platform": "cli"}, token)["id"]
        asyncio.run(self._run(urls, token, device, options))

    async def _run(self, urls, token, device, options) -> None:
        def show(delivery) -> None:
            m = delivery.message
            self.stdout.write(f"[{m['conversation']}#{m['seq']}] {m['sender']['username']}: {m['body']}")

        client = ParleyClient(urls, token=token, device_id=device, on_message=show)
        runner = asyncio.create_task(client.run())
        await client.ready.wait()
        if options["send"]:
            reply = await client.send(options["send"], options["body"])
            self.stdout.write(f"sent as seq {reply['message']['seq']}")
            await client.stop()
            runner.cancel()
            return
        await runner
