"""``parley-gateway`` / ``python -m gateway``: pick the event loop, then start daphne (gateway.server).

daphne makes its event loop (and installs Twisted's asyncio reactor on it) when ``daphne.server``
is imported, so the loop's kind is chosen here, before that import. By default it is uvloop's:
Twisted registers a socket for writability on every write and removes it once the write is
done, and on asyncio's own loop each of those is a selector update in Python (a large channel's
flush writes a frame to every member's socket). ``PARLEY_GATEWAY_EVENT_LOOP=asyncio`` keeps the
standard library's loop. This is an environment variable, not a Django setting, because it is
read before Django is set up.
"""
from __future__ import annotations

import asyncio
import os

EVENT_LOOPS = ("uvloop", "asyncio")


def install_event_loop(choice: str | None = None) -> str:
    """Make new event loops of the chosen kind (``PARLEY_GATEWAY_EVENT_LOOP``, default uvloop)."""
    choice = choice or os.environ.get("PARLEY_GATEWAY_EVENT_LOOP", "uvloop")
    if choice not in EVENT_LOOPS:
        raise SystemExit(f"PARLEY_GATEWAY_EVENT_LOOP is {choice!r}; it must be one of {', '.join(EVENT_LOOPS)}")
    if choice == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return choice


def main() -> None:
    install_event_loop()
    from gateway.server import main as serve  # imports daphne: its loop is made now

    serve()
