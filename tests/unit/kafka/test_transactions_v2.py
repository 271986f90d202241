"""The transaction protocol v2's pieces without a broker: the wire shapes aiokafka's handlers
read, the features in an ApiVersions answer, and the transaction state v2 keeps
(kafka/transactions_v2.py; the protocol against a broker: tests/integration)."""

from io import BytesIO
from types import SimpleNamespace

import aiokafka.errors as Errors
import pytest
from aiokafka import TopicPartition
from aiokafka.protocol.types import UnsignedVarInt32
from aiokafka.structs import OffsetAndMetadata

from citybrain.kafka.transactions_v2 import (
    _FINALIZED_FEATURES,
    UNSTABLE_OFFSET_COMMIT,
    ApiVersionsResponse_v3,
    EndTxnRequest_v5,
    EndTxnRequestV5,
    OffsetFetchRequest_v7,
    OffsetFetchRequestV7,
    OffsetFetchResponse_v7,
    ProduceRequest_v12,
    ProduceRequestV12,
    ProduceResponse_v12,
    TransactionManagerV2,
    TxnOffsetCommitRequest_v5,
    TxnOffsetCommitRequestV5,
    TxnOffsetCommitResponse_v5,
    _TxnOffsetCommitV2Handler,
    finalized_features,
    stable_offsets,
)

TP = TopicPartition("orders", 1)


def test_the_finalized_features_are_read_from_the_answers_tag_2():
    features = _FINALIZED_FEATURES.encode([("metadata.version", 30, 30, {}), ("transaction.version", 2, 2, {})])
    # one tagged field, tag 2, its size, its bytes (aiokafka's TaggedFields.encode writes no size)
    tags = UnsignedVarInt32.encode(1) + UnsignedVarInt32.encode(2) + UnsignedVarInt32.encode(len(features)) + features
    answer = ApiVersionsResponse_v3(0, [(0, 3, 13, {})], 0, {}).encode()[:-1] + tags
    assert finalized_features(ApiVersionsResponse_v3.decode(BytesIO(answer))) == {
        "metadata.version": 30, "transaction.version": 2}
    assert finalized_features(ApiVersionsResponse_v3(0, [], 0, {})) == {}   # a cluster finalizing none


def test_a_produce_answer_reads_as_aiokafkas_handler_expects():
    answer = ProduceResponse_v12(
        [("orders", [(1, 0, 42, -1, 0, [], None, {})], {})], 0, {})
    decoded = ProduceResponse_v12.decode(answer.encode())
    assert decoded.topics == [("orders", [(1, 0, 42, -1, 0, [], None)])]
    assert decoded.API_VERSION == 12


def test_a_produce_request_carries_the_transactional_id_and_each_batch():
    struct = ProduceRequestV12("stage-3", -1, 5000, [("orders", [(1, b"batch")])]).build(ProduceRequest_v12)
    again = ProduceRequest_v12.decode(struct.encode())
    assert (again.transactional_id, again.required_acks, again.timeout) == ("stage-3", -1, 5000)
    assert again.topics == [("orders", [(1, b"batch", {})], {})]


def test_offsets_commit_with_no_generation_and_the_answer_reads_as_v0s():
    struct = TxnOffsetCommitRequestV5("stage-3", "stage", 7, 4, [("inbox", [(3, 100, "")])]).build(
        TxnOffsetCommitRequest_v5)
    again = TxnOffsetCommitRequest_v5.decode(struct.encode())
    assert (again.producer_id, again.producer_epoch, again.generation_id, again.member_id) == (7, 4, -1, "")
    assert again.topics == [("inbox", [(3, 100, -1, "", {})], {})]
    answer = TxnOffsetCommitResponse_v5(0, [("inbox", [(3, 51, {})], {})], {})
    assert TxnOffsetCommitResponse_v5.decode(answer.encode()).errors == [("inbox", [(3, 51)])]


def test_end_txn_sends_the_result():
    struct = EndTxnRequestV5("stage-3", 7, 4, 1).build(EndTxnRequest_v5)
    assert EndTxnRequest_v5.decode(struct.encode()).transaction_result is True


def manager(v2: bool) -> TransactionManagerV2:
    m = TransactionManagerV2("stage-3", 60_000)
    m.v2 = v2
    m.set_pid_and_epoch(7, 0)
    m.begin_transaction()
    return m


async def test_under_v2_a_partition_and_the_group_are_in_the_transaction_when_handed_over():
    m = manager(v2=True)
    m.maybe_add_partition_to_txn(TP)
    m.add_offsets_to_txn({TopicPartition("inbox", 3): OffsetAndMetadata(100, "")}, "stage")
    assert m.partitions_to_add() == set()                 # no AddPartitionsToTxn
    assert m.consumer_group_to_add() is None              # no AddOffsetsToTxn
    assert m.offsets_to_commit() is not None              # straight to TxnOffsetCommit
    assert TP in m.txn_partitions and not m.is_empty_transaction()


async def test_under_v1_the_manager_is_aiokafkas():
    m = manager(v2=False)
    m.maybe_add_partition_to_txn(TP)
    m.add_offsets_to_txn({TopicPartition("inbox", 3): OffsetAndMetadata(100, "")}, "stage")
    assert m.partitions_to_add() == {TP}
    assert m.consumer_group_to_add() == "stage"


async def test_a_new_epoch_starts_every_partitions_sequence_at_zero():
    m = manager(v2=True)
    m.increment_sequence_number(TP, 5)
    m.next_epoch(7, 0)                        # the same epoch (a retried EndTxn's answer): kept
    assert m.sequence_number(TP) == 5
    m.next_epoch(7, 1)
    assert (m.producer_id, m.producer_epoch, m.sequence_number(TP)) == (7, 1, 0)
    m.next_epoch(8, 0)                        # the epoch ran out: a new producer id
    assert (m.producer_id, m.producer_epoch) == (8, 0)


# --- one transactional id per process (KIP-447) -----------------------------------------

def test_a_members_offsets_carry_its_generation_member_and_instance():
    struct = TxnOffsetCommitRequestV5("stage@w1", "stage", 7, 4, [("inbox", [(3, 100, "")])],
                                      member=(12, "member-a", "w1")).build(TxnOffsetCommitRequest_v5)
    again = TxnOffsetCommitRequest_v5.decode(struct.encode())
    assert (again.generation_id, again.member_id, again.group_instance_id) == (12, "member-a", "w1")


def test_offsets_are_fetched_stable():
    struct = OffsetFetchRequestV7("stage", [("inbox", [0, 3])]).build(OffsetFetchRequest_v7)
    again = OffsetFetchRequest_v7.decode(struct.encode())
    assert (again.group_id, again.topics, again.require_stable) == ("stage", [("inbox", [0, 3], {})], True)


class Coordinator:
    """A client whose group coordinator answers OffsetFetch with each of ``answers`` in
    turn: per partition of ``inbox`` (offset, error code), or an exception."""

    def __init__(self, *answers):
        self.answers, self.asked = list(answers), 0

    async def coordinator_lookup(self, kind, key):
        return 1

    async def send(self, node_id, request):
        self.asked += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        partitions = [(p, offset, -1, "", code, {}) for p, (offset, code) in sorted(answer.items())]
        return OffsetFetchResponse_v7.decode(OffsetFetchResponse_v7(0, [("inbox", partitions, {})], 0, {}).encode())


INBOX0, INBOX1 = TopicPartition("inbox", 0), TopicPartition("inbox", 1)


async def test_stable_offsets_are_asked_again_while_a_transaction_holds_them():
    client = Coordinator({0: (-1, UNSTABLE_OFFSET_COMMIT), 1: (5, 0)},
                         Errors.KafkaConnectionError(),                 # the coordinator moved: asked again
                         {0: (-1, 16), 1: (5, 0)},                      # NOT_COORDINATOR: looked up again
                         {0: (40, 0), 1: (5, 0)})
    got = await stable_offsets(client, "stage", {INBOX0, INBOX1}, backoff=0)
    assert got == {INBOX0: 40, INBOX1: 5} and client.asked == 4


async def test_stable_offsets_none_where_nothing_is_committed_and_a_refusal_raises():
    assert await stable_offsets(Coordinator({0: (-1, 0)}), "stage", {INBOX0}) == {INBOX0: None}
    with pytest.raises(Errors.GroupAuthorizationFailedError):
        await stable_offsets(Coordinator({0: (-1, 30)}), "stage", {INBOX0})


async def test_a_stale_members_offsets_leave_the_transaction_abortable():
    manager = TransactionManagerV2("stage@w1", 10000)
    manager.set_pid_and_epoch(7, 0)
    manager.v2 = True
    manager.begin_transaction()
    waiting = manager.add_offsets_to_txn({INBOX0: OffsetAndMetadata(41, "")}, "stage")
    sender = SimpleNamespace(_txn_manager=manager)
    handler = _TxnOffsetCommitV2Handler.__new__(_TxnOffsetCommitV2Handler)
    handler._sender, handler._offsets, handler._group_id = sender, {INBOX0: OffsetAndMetadata(41, "")}, "stage"
    assert handler.handle_response(SimpleNamespace(errors=[("inbox", [(0, 22)])])) is None   # ILLEGAL_GENERATION
    with pytest.raises(Errors.CommitFailedError):
        await waiting
    assert manager.state.name == "ABORTABLE_ERROR"
