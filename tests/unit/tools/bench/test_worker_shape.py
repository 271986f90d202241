"""The bench's worker shapes: which process hosts what (worker.stages, worker.console)."""

import pytest

from citybrain_tools.bench.common import ONE_PROCESS, WorkerShape
from tests.deploy_files import hosted as hosts


def test_one_process_hosts_both_stages_and_the_console():
    assert [hosts(env) for env in ONE_PROCESS.processes()] == [(["normalise", "fuse"], True)]
    assert ONE_PROCESS.describe() == "both stages in one worker process"


def test_the_console_apart_is_a_process_of_its_own_and_the_stage_processes_serve_none():
    shape = WorkerShape(2, console_apart=True)
    assert [hosts(env) for env in shape.processes()] == [(["normalise"], False), (["fuse"], False), ([], True)]
    assert shape.describe().endswith("the console in a process of its own")
    assert [hosts(env) for env in WorkerShape(1, True).processes()] == [(["normalise", "fuse"], False), ([], True)]


def test_a_shape_of_three_stage_processes_is_refused():
    with pytest.raises(ValueError, match="1 or 2"):
        WorkerShape(3)
