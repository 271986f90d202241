"""The hot path starts with the app, not after Faust (issue 38: a worker's start-to-ready).

Faust starts an app's tasks (``@app.task``) only once its own services are up and its
consumer has joined its group and recovered its tables (``App.on_started``).  After a
SIGKILL that join waits out the dead incarnation's session (measured: the tasks began
~4 s after the app was built, the stages consumed ~1 s later).  The batch stages need
none of it — their own aiokafka clients, the registry and warning readers — so they run
as the futures of a service started as the app's first dependency: beside Faust's start
rather than behind it.  Stopped as the app's last dependency (children stop in reverse),
after Faust's own consumer and producer, as the app's tasks were."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import mode

Job = Callable[[], Awaitable[None]]


class _Jobs(mode.Service):
    """Starts the jobs as its futures: stopping it (the app's stop) cancels them."""

    def __init__(self, jobs: list[Job], last: list[Job], **kwargs) -> None:
        super().__init__(**kwargs)
        self.jobs, self.last = jobs, last

    async def on_start(self) -> None:
        for fun in self.jobs:
            self.add_future(fun())

    async def on_shutdown(self) -> None:   # the jobs have ended, and the app's other services
        for fun in self.last:
            await fun()


class EarlyStart:
    """Coroutines started when the app starts, before its Kafka producer, consumer,
    agents and table recovery.  A coroutine that raises crashes the app, as an app
    task's would (mode's ``crash`` walks up to the worker)."""

    def __init__(self, app) -> None:
        self.jobs: list[Job] = []
        self.last: list[Job] = []
        self.service = _Jobs(self.jobs, self.last)
        # Ahead of every dependency Faust adds at start (sensors, producer, web server,
        # consumer, agents, tables: ``on_init_dependencies``), so started first.
        app.add_dependency(self.service)

    def task(self, fun: Job) -> Job:
        """Decorator, like ``@app.task``: run ``fun()`` once the app starts."""
        self.jobs.append(fun)
        return fun

    def at_stop(self, fun: Job) -> Job:
        """Decorator: await ``fun()`` as the app's very last step of stopping — after
        the jobs and every Faust service (its consumer included) have stopped."""
        self.last.append(fun)
        return fun


def start_early(app) -> EarlyStart:
    """An ``EarlyStart`` attached to ``app`` (a faust.App not yet started)."""
    return EarlyStart(app)


async def when_set(event: asyncio.Event, then: Callable[[], object]) -> None:
    """``then()`` once ``event`` is set (a phase's end: stream/app.py, citybrain/startup.py)."""
    await event.wait()
    then()
