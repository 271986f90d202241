"""A hung test fails alone and says where it hung.

pytest-timeout reads the limit (``timeout`` in pyproject.toml, ``--timeout``, the
``timeout`` mark); this plugin is its timer.  Past the limit it prints, to the process's
own stderr (under xdist the run's output: pytest-timeout's own printing goes to the
worker's terminal writer, which xdist discards) and to test-artifacts/hung/: the test's
captured output, every thread's stack and — what shows where an asyncio test waits; a
thread's stack shows only the loop in ``select`` — every task's stack of each running
loop.  Then it ends the process; xdist reports the test as failed and replaces the
process, and the suite goes on.  Without it one hung test held CI to the job's limit with
no name in the output."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import re
import sys
import threading
import traceback

import pytest


def running_loops() -> list[asyncio.AbstractEventLoop]:
    return [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]


def where_it_waits(out: io.TextIOBase) -> None:
    """Every other thread's stack, then every task of every running loop (read from this
    thread: a snapshot for a diagnosis, not a synchronised view)."""
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident != me:
            print(f"--- 线程 thread {names.get(ident, ident)}", file=out)
            out.write("".join(traceback.format_stack(frame)))
    for loop in running_loops():
        try:
            tasks = list(asyncio.all_tasks(loop))
        except RuntimeError:   # the set kept changing while read
            print("--- (the loop's tasks could not be listed)", file=out)
            continue
        for task in tasks:
            print(f"--- 任务 task {task.get_name()}", file=out)
            try:
                task.print_stack(limit=20, file=out)
            except Exception as exc:  # a frame changing under us: say so, go on
                print(f"  {task!r}: {exc!r}", file=out)


def report(item: pytest.Item, timeout: float) -> str:
    out = io.StringIO()
    print(f"\n{'+' * 20} 测试超时 TEST HUNG: {item.nodeid} still running after {timeout:.0f} s {'+' * 20}",
          file=out)
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.suspend_global_capture(in_=True)
        captured_out, captured_err = capman.read_global_capture()
        for name, text in (("stdout", captured_out), ("stderr", captured_err)):
            if text:
                print(f"--- captured {name} (last 20,000 characters)", file=out)
                out.write(text[-20_000:])
    where_it_waits(out)
    print(f"{'+' * 20} end of {item.nodeid} {'+' * 20}", file=out)
    return out.getvalue()


def on_timeout(item: pytest.Item, timeout: float) -> None:
    try:
        text = report(item, timeout)
        hung = item.config.rootpath / "test-artifacts" / "hung"
        hung.mkdir(parents=True, exist_ok=True)
        (hung / (re.sub(r"[^\w.-]+", "_", item.nodeid)[-150:] + ".txt")).write_text(text)
        sys.stderr.write(text)
    except Exception:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(1)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    if settings.method != "thread":
        return None    # pytest-timeout's signal method: it raises in the test itself
    timer = threading.Timer(settings.timeout, on_timeout, (item, settings.timeout))
    timer.daemon = True
    timer.name = f"hang watchdog {item.nodeid}"

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel    # the attribute pytest-timeout's cancel hook calls
    timer.start()
    return True
