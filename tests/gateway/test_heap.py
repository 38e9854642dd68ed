"""The gateway's garbage collector (gateway.heap): the loaded application frozen, collections
rarer, every pause measured without taking a lock inside the collector."""
from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest
from prometheus_client import REGISTRY

from gateway import heap


@pytest.fixture
def collector():
    """Whatever a test does to this process's collector is undone after it."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    if heap._record_pause in gc.callbacks:
        gc.callbacks.remove(heap._record_pause)
    heap._pauses.clear()


def pause_count(generation: int) -> float:
    return REGISTRY.get_sample_value("parley_gc_pause_seconds_count", {"generation": str(generation)}) or 0.0


def test_settling_freezes_what_is_loaded_and_sets_the_configured_thresholds(collector, settings):
    settings.PARLEY_GATEWAY_GC_THRESHOLDS = (12345, 7, 9)
    heap.settle()
    assert gc.get_freeze_count() > 10_000  # Django, the application, the test session: all loaded
    assert gc.get_threshold() == (12345, 7, 9)


def test_every_collection_after_settling_reaches_the_pause_histogram_at_the_next_tick(collector, settings):
    settings.PARLEY_GATEWAY_GC_THRESHOLDS = (20000, 20, 20)
    heap.settle()
    before = pause_count(2)
    gc.collect()
    gc.collect()
    assert pause_count(2) == before  # recorded, not yet observed: the collector takes no lock
    heap.observe_pauses()
    assert pause_count(2) == before + 2


def test_settling_twice_records_each_collection_once(collector, settings):
    heap.settle()
    heap.settle()
    heap.observe_pauses()
    gc.collect()
    assert len(heap._pauses) == 1


@pytest.mark.parametrize("value", ["0,10,10", "20000,10", "a,b,c", "20000,-1,10"])
def test_thresholds_that_would_stop_or_break_the_collector_are_refused_at_start(value):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatproject.settings", "PARLEY_GATEWAY_GC_THRESHOLDS": value}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "PARLEY_GATEWAY_GC_THRESHOLDS is three positive integers" in result.stderr
