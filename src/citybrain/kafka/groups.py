"""Static group members (KIP-345): one leaving on purpose, and who the members are.

aiokafka sends no LeaveGroup for a consumer with a ``group_instance_id`` (its LeaveGroup
stops at v1, which names a member id only): the broker then keeps the member's partitions
until its session times out.  That is right for a quick return, not for a worker that
stops for good or whose partitions should move at once.  LeaveGroup v3 names members by
instance id — what Kafka's ``AdminClient.removeMembersFromConsumerGroup`` sends — so a
short-lived client sends it once the consumer has stopped (its last commit made).
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

from aiokafka.errors import for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Bytes, Int16, Int32, Schema, String

from citybrain.kafka.clients import kafka_client

log = logging.getLogger(__name__)
GROUP_COORDINATOR = 0   # FindCoordinator key type


class LeaveGroupResponse_v3(Response):
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")),
                          ("error_code", Int16))),
    )


class LeaveGroupRequest_v3(RequestStruct):
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = LeaveGroupResponse_v3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


_Struct: TypeAlias = LeaveGroupRequest_v3


class StaticLeaveGroup(Request[_Struct]):
    API_KEY = 13

    def __init__(self, group: str, instance_ids: list[str]):
        self.group, self.instance_ids = group, instance_ids

    def build(self, request_struct_class: type[_Struct]) -> _Struct:
        # member id "": the broker finds the member by its instance id.
        return request_struct_class(self.group, [("", i) for i in self.instance_ids])


async def leave_group(bootstrap: str, group_id: str, instance_id: str) -> bool:
    """Remove the static member ``instance_id`` from ``group_id`` now (a rebalance among
    the others starts at once).  True when the broker took it; False (logged) otherwise —
    the member then leaves when its session times out, as it would have anyway."""
    client = kafka_client(bootstrap_servers=bootstrap, client_id="citybrain-leave-group")
    try:
        await client.bootstrap()
        node = await client.coordinator_lookup(GROUP_COORDINATOR, group_id)
        response = await client.send(node, StaticLeaveGroup(group_id, [instance_id]))
        codes = [response.error_code] + [m[2] for m in response.members]
        errors = [for_code(c).__name__ for c in codes if c]
        if errors:
            log.warning("离组失败 leaving group %s as %s: %s (it leaves when its session times out)",
                        group_id, instance_id, ", ".join(errors))
            return False
        log.info("已离组 left group %s as static member %s: its partitions move now", group_id, instance_id)
        return True
    except Exception as e:  # noqa: BLE001 - best effort: the session timeout is the fallback
        log.warning("离组失败 leaving group %s as %s failed: %r (it leaves when its session times out)",
                    group_id, instance_id, e)
        return False
    finally:
        await client.close()


# DescribeGroups v4: the first to name each member's static instance id (aiokafka's stops at v3).

class DescribeGroupsResponse_v4(Response):
    API_KEY = 15
    API_VERSION = 4
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("groups", Array(
            ("error_code", Int16), ("group", String("utf-8")), ("state", String("utf-8")),
            ("protocol_type", String("utf-8")), ("protocol", String("utf-8")),
            ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")),
                              ("client_id", String("utf-8")), ("client_host", String("utf-8")),
                              ("member_metadata", Bytes), ("member_assignment", Bytes))),
            ("authorized_operations", Int32))),
    )


class DescribeGroupsRequest_v4(RequestStruct):
    API_KEY = 15
    API_VERSION = 4
    RESPONSE_TYPE = DescribeGroupsResponse_v4
    SCHEMA = Schema(("groups", Array(String("utf-8"))), ("include_authorized_operations", Boolean))


class DescribeGroup(Request[DescribeGroupsRequest_v4]):
    API_KEY = 15

    def __init__(self, group: str):
        self.group = group

    def build(self, request_struct_class: type[DescribeGroupsRequest_v4]) -> DescribeGroupsRequest_v4:
        return request_struct_class([self.group], False)


async def static_members(client: Any, group_id: str) -> set[str]:
    """The instance ids of ``group_id``'s static members now (through a started client)."""
    node = await client.coordinator_lookup(GROUP_COORDINATOR, group_id)
    response = await client.send(node, DescribeGroup(group_id))
    for error_code, _, _, _, _, members, _ in response.groups:
        if error_code:
            raise for_code(error_code)()
        return {instance for _, instance, *_ in members if instance}
    return set()
