"""The gateway's event loop (gateway.launch): chosen before daphne makes its own."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway.launch import install_event_loop

# What daphne's loop is once the launcher has run, in a fresh interpreter (daphne makes its loop
# when imported, so this cannot be asked of the test process).
PROBE = ("from gateway.launch import install_event_loop; install_event_loop(); "
         "import daphne.server; print(type(daphne.server.twisted_loop).__module__)")


def daphne_loop_module(choice: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PARLEY_GATEWAY_EVENT_LOOP"}
    if choice is not None:
        env["PARLEY_GATEWAY_EVENT_LOOP"] = choice
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    return result.stdout.strip()


def test_daphne_runs_on_uvloop_by_default():
    assert daphne_loop_module(None) == "uvloop"


def test_the_standard_library_loop_can_be_chosen():
    assert daphne_loop_module("asyncio").startswith("asyncio")


def test_an_unknown_event_loop_is_refused_with_the_choices():
    with pytest.raises(SystemExit, match="uvloop, asyncio"):
        install_event_loop("tokio")
