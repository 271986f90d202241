"""Static group membership (issue 38 item 2, DESIGN §17), through a real worker process:
its stage consumers join as ``worker.instance_id``; a SIGKILLed worker started again takes
its own place in the group (one member, not the dead one beside a new one until the
session lapses); a SIGTERMed one leaves at once (aiokafka sends no LeaveGroup for a static
member: kafka/groups.py does), so its partitions need not wait out its session."""

import signal

import pytest

from citybrain.kafka.clients import kafka_admin
from citybrain.stream.commands import command_group

from .kafka_helpers import WorkerProcess, new_prefix, prepare

pytestmark = pytest.mark.integration

INSTANCE = "it-static-w1"


async def members(bootstrap: str, group: str) -> list[str]:
    """The member ids of ``group`` (a static member's begins with its instance id)."""
    admin = kafka_admin(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        [described] = response.groups
        return [m[0] for m in described[5]]   # (error, group, state, protocol_type, protocol, members, …)
    finally:
        await admin.close()


async def test_a_worker_keeps_its_place_through_a_kill_and_leaves_on_sigterm(kafka_bootstrap, tmp_path):
    prefix = new_prefix("static")
    await prepare(kafka_bootstrap, prefix)
    group = f"{prefix}citybrain-normalise"
    commands = command_group(f"{prefix}citybrain")   # the command routing, a stage too
    faust_group = f"{prefix}citybrain"   # Faust's own consumer, static too
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path, env={"CITYBRAIN_INSTANCE_ID": INSTANCE}).start()
    try:
        first = await members(kafka_bootstrap, group)
        assert len(first) == 1 and first[0].startswith(f"{INSTANCE}-"), first
        routing = await members(kafka_bootstrap, commands)
        assert len(routing) == 1 and routing[0].startswith(f"{INSTANCE}-"), routing
        faust_first = await members(kafka_bootstrap, faust_group)
        assert len(faust_first) == 1 and faust_first[0].startswith(f"{INSTANCE}-"), faust_first

        worker.stop(signal.SIGKILL)
        worker.start()   # a supervisor's restart: the same instance id
        again = await members(kafka_bootstrap, group)
        # The dead incarnation's membership was taken over, not left to lapse beside a new one.
        assert len(again) == 1 and again[0].startswith(f"{INSTANCE}-") and again != first, again
        faust_again = await members(kafka_bootstrap, faust_group)
        assert len(faust_again) == 1 and faust_again != faust_first, faust_again

        worker.stop(signal.SIGTERM)
        assert worker.proc.returncode is not None
        assert await members(kafka_bootstrap, group) == []   # left at once, not after its session
        assert await members(kafka_bootstrap, commands) == []
        assert await members(kafka_bootstrap, faust_group) == []
        assert "已离组 left group" in worker.log_path.read_text()
    finally:
        worker.stop()
