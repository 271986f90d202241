"""Static membership (issue 38 item 2): the stages' instance id, and the LeaveGroup v3 a
static member sends to hand its partitions over at once (aiokafka sends none)."""

import struct

import aiokafka.errors as Errors
import pytest

from citybrain.config import Config, WorkerSettings, worker_instance_id
from citybrain.kafka.groups import DescribeGroupsResponse_v4, LeaveGroupResponse_v3, StaticLeaveGroup, static_members
from citybrain.stream.stage import RunnerSettings
from citybrain.stream.wiring import stage_consumer

from ..stream.fakes import FakeStage


def _string(s: str) -> bytes:
    return struct.pack(">h", len(s)) + s.encode()


def test_leave_group_v3_names_the_member_by_its_instance_id_only():
    request = StaticLeaveGroup("grp-fuse", ["worker-0-6066"]).prepare({13: (0, 5)})
    assert request.API_VERSION == 3
    assert request.encode() == (_string("grp-fuse") + struct.pack(">i", 1) + _string("")
                                + _string("worker-0-6066"))


def test_leave_group_v3_response_gives_each_member_its_error():
    body = (struct.pack(">ih", 0, 0) + struct.pack(">i", 1) + _string("m-1") + _string("worker-0-6066")
            + struct.pack(">h", 82))   # FENCED_INSTANCE_ID
    response = LeaveGroupResponse_v3.decode(body)
    assert response.error_code == 0 and response.members == [("m-1", "worker-0-6066", 82)]


def test_instance_id_from_the_configuration_else_the_pod_name_and_port():
    assert worker_instance_id(WorkerSettings(instance_id="edge-7")) == "edge-7"
    pod = WorkerSettings(web_port=6066)
    assert worker_instance_id(pod, {"HOSTNAME": "citybrain-worker-2"}) == "citybrain-worker-2-6066"
    # two workers on one host differ by their port (one id shared would be fenced)
    assert worker_instance_id(WorkerSettings(web_port=7001), {"HOSTNAME": "h"}) != \
        worker_instance_id(WorkerSettings(web_port=7002), {"HOSTNAME": "h"})
    assert worker_instance_id(pod, {"HOSTNAME": "a b/c"}) == "a-b-c-6066"
    assert worker_instance_id(pod, {})   # the host's name when HOSTNAME is not set


def test_environment_sets_the_instance_id_and_the_leave_on_stop():
    cfg = Config(env={"CITYBRAIN_INSTANCE_ID": "w-3", "CITYBRAIN_LEAVE_GROUP_ON_STOP": "false"})
    assert cfg.settings.worker.instance_id == "w-3" and cfg.settings.worker.leave_group_on_stop is False
    assert Config(env={}).settings.worker.leave_group_on_stop is True


async def test_the_stage_consumer_joins_as_the_static_member():
    static = stage_consumer(FakeStage(), RunnerSettings("127.0.0.1:1", group_instance_id="w-3"))
    assert static._group_instance_id == "w-3"
    assert stage_consumer(FakeStage(), RunnerSettings("127.0.0.1:1"))._group_instance_id is None


async def test_the_stage_consumer_leaves_a_hung_coordinator_after_5_s():
    """Its heartbeat to a hung coordinator is given up in 5 s, inside the 10 s session the
    group's next coordinator counts (docs/performance.md, 'A hung broker')."""
    consumer = stage_consumer(FakeStage(), RunnerSettings("127.0.0.1:1"))
    assert consumer._client._request_timeout_ms == 5000 < RunnerSettings("x").session_timeout_ms
    assert consumer._client._metadata_max_age_ms == 2000


class GroupCoordinator:
    """A client whose coordinator describes the group with these members (member id,
    instance id: None for a dynamic member) and ``error``."""

    def __init__(self, members, error: int = 0):
        self.members, self.error, self.asked = members, error, []

    async def coordinator_lookup(self, kind, key):
        return 1

    async def send(self, node_id, request):
        self.asked.append(request.prepare({15: (0, 5)}).API_VERSION)
        members = [(m, i, "citybrain-fuse", "/127.0.0.1", b"", b"") for m, i in self.members]
        return DescribeGroupsResponse_v4.decode(
            DescribeGroupsResponse_v4(0, [(self.error, "grp-fuse", "Stable", "consumer", "range", members, 0)]).encode())


async def test_the_static_members_are_read_from_describe_groups_v4():
    client = GroupCoordinator([("m-1", "worker-0-6066"), ("m-2", None), ("m-3", "worker-1-6067")])
    assert await static_members(client, "grp-fuse") == {"worker-0-6066", "worker-1-6067"}
    assert client.asked == [4]   # the first version naming instance ids
    with pytest.raises(Errors.CoordinatorNotAvailableError):
        await static_members(GroupCoordinator([], error=15), "grp-fuse")
