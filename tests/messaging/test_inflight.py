"""messaging.inflight: one batch in flight, later submissions coalesced into the next."""
import asyncio

from messaging.inflight import InFlightBatches


class Recorder:
    """An ``apply`` that records its batches, can be held open, and fails a batch holding a
    negative item."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: list[int]) -> None:
        self.batches.append(items)
        await self.release.wait()
        if min(items) < 0:
            raise ConnectionError("shard down")


async def test_submissions_of_one_turn_of_the_loop_are_applied_as_one_batch():
    apply = Recorder()
    batches = InFlightBatches(apply)
    await asyncio.gather(*(batches.submit(n) for n in range(50)))
    assert apply.batches == [list(range(50))]
    assert batches.batches == 1


async def test_what_arrives_while_a_batch_is_applied_waits_for_it_and_goes_in_the_next_in_order():
    apply = Recorder()
    apply.release.clear()
    batches = InFlightBatches(apply)
    first = asyncio.ensure_future(batches.submit(1))
    await asyncio.sleep(0.01)
    assert apply.batches == [[1]]  # a lone submission is applied at once, not on a timer
    later = [asyncio.ensure_future(batches.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert apply.batches == [[1]]  # one batch in flight
    apply.release.set()
    await asyncio.gather(first, *later)
    assert apply.batches == [[1], [2, 3, 4]]


async def test_a_failed_batch_reaches_every_caller_of_that_batch_and_not_the_next():
    apply = Recorder()
    apply.release.clear()
    batches = InFlightBatches(apply)
    doomed = [asyncio.ensure_future(batches.submit(n)) for n in (1, -1)]
    await asyncio.sleep(0.01)
    later = asyncio.ensure_future(batches.submit(2))
    await asyncio.sleep(0)
    apply.release.set()
    results = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    await later  # the next batch is applied, and succeeds
    assert apply.batches == [[1, -1], [2]]


async def test_a_cancelled_caller_leaves_its_item_and_the_others_batch_alone():
    apply = Recorder()
    apply.release.clear()
    batches = InFlightBatches(apply)
    impatient = asyncio.ensure_future(batches.submit(1))
    patient = asyncio.ensure_future(batches.submit(2))
    await asyncio.sleep(0.01)
    impatient.cancel()
    await asyncio.sleep(0)
    apply.release.set()
    await patient
    assert impatient.cancelled()
    assert apply.batches == [[1, 2]]


async def test_when_the_worker_is_cancelled_every_waiting_caller_is_released_and_nothing_is_left_queued():
    apply = Recorder()
    apply.release.clear()
    idle_calls = []
    batches = InFlightBatches(apply, on_idle=lambda: idle_calls.append(True))
    in_flight = asyncio.ensure_future(batches.submit(1))
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(batches.submit(2))
    await asyncio.sleep(0)
    batches._worker.cancel()  # what closing the loop does to it
    results = await asyncio.gather(in_flight, queued, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    assert idle_calls == [True]
    apply.release.set()
    await batches.submit(3)  # a fresh start, without the dropped item
    assert apply.batches == [[1], [3]]


async def test_on_idle_is_called_each_time_the_worker_runs_out_of_work():
    idle_calls = []
    batches = InFlightBatches(Recorder(), on_idle=lambda: idle_calls.append(True))
    await batches.submit(1)
    await asyncio.sleep(0)
    await batches.submit(2)
    await asyncio.sleep(0)
    assert idle_calls == [True, True]
