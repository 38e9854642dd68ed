"""Reconnect-storm admission: a bounded replay budget per gateway process, small gaps first."""
from __future__ import annotations

import asyncio
import random

import pytest
from channels.db import database_sync_to_async

from gateway import runtime
from messaging.send import do_send_message
from ops.admission import ReplayAdmission

from .conftest import Clock


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def serve_in_order(budget: ReplayAdmission, gaps: list[int], served: list[int]) -> list[asyncio.Task]:
    async def replay(gap: int) -> None:
        async with budget.slot(behind=gap):
            served.append(gap)
            await settle()

    tasks = [asyncio.create_task(replay(gap)) for gap in gaps]
    await settle()
    return tasks


async def test_replays_waiting_together_are_served_smallest_gap_first():
    budget = ReplayAdmission(1, ms_per_message=1, clock=Clock())
    served: list[int] = []
    async with budget.slot(behind=1):  # the budget is taken
        tasks = await serve_in_order(budget, [500, 5, 50, 200, 1], served)
        assert budget.waiting == 5 and served == []
    await asyncio.gather(*tasks)
    assert served == [1, 5, 50, 200, 500]


async def test_no_more_replays_run_at_once_than_the_budget():
    budget = ReplayAdmission(3, ms_per_message=1, clock=Clock())
    running, most = 0, 0

    async def replay(gap: int) -> None:
        nonlocal running, most
        async with budget.slot(behind=gap):
            running += 1
            most = max(most, running)
            await asyncio.sleep(random.random() / 1000)
            running -= 1

    await asyncio.gather(*(replay(random.randint(1, 1000)) for _ in range(50)))
    assert most == 3 and budget.running == 0 and budget.waiting == 0


async def test_a_far_behind_replay_is_overtaken_only_for_as_long_as_its_gap_is_worth():
    clock = Clock()
    budget = ReplayAdmission(1, ms_per_message=1, clock=clock)  # 1,000 behind: served 1 s later
    served: list[int] = []
    async with budget.slot(behind=1):
        tasks = await serve_in_order(budget, [1000], served)
        clock.advance(0.5)
        tasks += await serve_in_order(budget, [1], served)    # arrives within its second: goes first
        clock.advance(1.0)
        tasks += await serve_in_order(budget, [2], served)    # arrives after it: waits its turn
    await asyncio.gather(*tasks)
    assert served == [1, 1000, 2]


async def test_a_client_that_leaves_while_waiting_passes_its_turn_on():
    budget = ReplayAdmission(1, ms_per_message=1, clock=Clock())
    served: list[int] = []
    async with budget.slot(behind=1):
        tasks = await serve_in_order(budget, [1, 2, 3], served)
        tasks[0].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert served == [2, 3] and budget.running == 0


async def test_a_hello_with_nothing_to_replay_takes_no_slot():
    budget = ReplayAdmission(1, ms_per_message=1, clock=Clock())
    async with budget.slot(behind=1):
        async with budget.slot(behind=0):  # would wait forever if it needed the only slot
            assert budget.running == 1


@pytest.mark.django_db(transaction=True)
async def test_in_a_reconnect_storm_the_client_with_the_smallest_gap_is_ready_first(
        settings, make_user, make_device, make_group, open_socket):
    settings.PARLEY_REPLAY_CONCURRENCY = 1
    settings.PARLEY_REPLAY_ADMISSION_MS_PER_MESSAGE = 1000  # the hellos' arrival order is noise next to their gaps
    people = await database_sync_to_async(lambda: [make_user(f"u{i}") for i in range(4)])()
    alice, *others = people
    group = await database_sync_to_async(make_group)(alice, others)
    devices = [await database_sync_to_async(make_device)(user) for user in others]
    for i in range(30):
        await database_sync_to_async(do_send_message)(sender=alice, conversation_id=group.pk,
                                                      client_msg_id=f"k{i}", body=f"{i}")
    sockets = [await open_socket(user, device, hello=False) for user, device in zip(others, devices)]
    ready: list[int] = []

    async def hello(index: int, cursor: int) -> None:
        pages, _ = await sockets[index].hello({group.pk: cursor})
        assert sum(len(p["messages"]) for p in pages) == 30 - cursor
        ready.append(30 - cursor)

    admission = (await runtime.current()).admission
    async with admission.slot(behind=1):  # the storm arrives while the budget is busy
        hellos = [asyncio.create_task(hello(i, cursor)) for i, cursor in enumerate((0, 29, 20))]
        while admission.waiting < 3:
            await asyncio.sleep(0.01)
    await asyncio.gather(*hellos)
    assert ready == [1, 10, 30]
