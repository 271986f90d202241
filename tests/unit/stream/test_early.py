"""stream/early.py: the hot path's coroutines start with the app, while its Faust side
(stood in for by a dependency that blocks, as a consumer waiting out a dead member's
session does) is still starting; a coroutine that fails crashes the app; the app's stop
stops them, and what must come last (leaving Faust's group) comes after Faust's services."""

import asyncio

import mode

from citybrain.stream.early import start_early, when_set


class SlowJoin(mode.Service):
    """Faust's consumer joining its group after a SIGKILL: done when the test says."""

    def __init__(self, joined: asyncio.Event, **kw):
        super().__init__(**kw)
        self.joined = joined

    async def on_start(self) -> None:
        await self.joined.wait()


class App(mode.Service):
    """As faust.App: its own services are added at start (``on_init_dependencies``) and
    its tasks run once they all have started (``on_started``)."""

    def __init__(self, joined: asyncio.Event, **kw):
        super().__init__(**kw)
        self.joined, self.tasks_began = joined, asyncio.Event()

    def on_init_dependencies(self):
        return [SlowJoin(self.joined)]

    async def on_started(self) -> None:
        self.tasks_began.set()


async def test_early_jobs_run_while_the_app_is_still_joining_and_stop_with_it():
    joined = asyncio.Event()
    app = App(joined)
    early = start_early(app)
    consuming, cancelled = asyncio.Event(), asyncio.Event()

    @early.task
    async def stages() -> None:
        consuming.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    starting = asyncio.create_task(app.start())
    await asyncio.wait_for(consuming.wait(), 2)      # the hot path runs …
    assert not app.tasks_began.is_set()              # … while the app's group join still waits
    joined.set()
    await asyncio.wait_for(starting, 2)
    assert app.tasks_began.is_set()
    await app.stop()
    assert cancelled.is_set()                        # the app's stop reaches the hot path


async def test_at_stop_runs_after_the_jobs_and_the_apps_own_services_stopped():
    joined = asyncio.Event()
    joined.set()
    app = App(joined)
    early = start_early(app)
    order: list[str] = []

    @early.task
    async def stages() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            order.append("stages handed over")

    @early.at_stop
    async def leave() -> None:   # e.g. Faust's group, once its consumer has stopped
        order.append(f"left; join service stopped: {slow.should_stop}")

    await app.start()
    [slow] = [c for c in app._children if isinstance(c, SlowJoin)]
    await app.stop()
    assert order == ["stages handed over", "left; join service stopped: True"]


async def test_a_failing_early_job_crashes_the_app_and_the_worker_above_it():
    joined = asyncio.Event()
    joined.set()
    app = App(joined)
    worker = mode.Service()   # as faust's Worker holds the app: its crash is what ends the process
    worker.add_dependency(app)
    early = start_early(app)

    @early.task
    async def stages() -> None:
        raise RuntimeError("a stage failed for good")

    await worker.start()
    await asyncio.wait_for(worker._crashed.wait(), 2)
    assert isinstance(app.crash_reason, RuntimeError) and worker.crash_reason is app.crash_reason
    await worker.stop()


async def test_when_set_calls_back_once_the_event_is_set():
    event, seen = asyncio.Event(), []
    waiting = asyncio.create_task(when_set(event, lambda: seen.append("consuming")))
    await asyncio.sleep(0)
    assert seen == []
    event.set()
    await asyncio.wait_for(waiting, 1)
    assert seen == ["consuming"]
