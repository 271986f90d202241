"""tests/hang_watchdog.py: a hung test ends its run with its name and where it waits."""

import subprocess
import sys

from citybrain.paths import PROJECT_ROOT

HANGS = '''
import asyncio

async def the_reply_that_never_comes():
    print("asked the broker")
    await asyncio.Event().wait()

async def test_hangs():
    await asyncio.gather(the_reply_that_never_comes())
'''


def test_a_hung_test_is_named_with_its_tasks_stack_and_the_run_ends(tmp_path):
    (tmp_path / "test_hangs.py").write_text(HANGS)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.hang_watchdog", "-p", "no:cacheprovider",
         "-o", "timeout=2", "-o", "timeout_method=thread", "-o", "asyncio_mode=auto",
         "--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path / "test_hangs.py")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "测试超时 TEST HUNG: test_hangs.py::test_hangs still running after 2 s" in run.stderr
    assert "asked the broker" in run.stderr                      # what it printed
    assert "await asyncio.Event().wait()" in run.stderr           # where its task waits
    assert "in the_reply_that_never_comes" in run.stderr
    saved = (tmp_path / "test-artifacts" / "hung" / "test_hangs.py_test_hangs.txt").read_text()
    assert "in the_reply_that_never_comes" in saved
