"""The local broker's start is seen in the lines this start wrote, however long the log
(appended across restarts) has grown."""

import socket
import subprocess
import sys

from citybrain_tools.local_kafka.broker import LocalBroker


def test_a_start_is_seen_after_a_log_of_more_than_100000_lines(tmp_path):
    broker = LocalBroker(tmp_path)
    broker.log_file.write_text("[old] INFO Kafka Server started\n" * 100_001)   # earlier starts
    offset = broker.log_file.stat().st_size
    with socket.socket() as listening, broker.log_file.open("a") as log:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        log.write("[new] INFO [KafkaRaftServer nodeId=1] Kafka Server started\n")
        log.flush()
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert broker._wait_started(proc, offset, address, timeout=5) == address
        finally:
            proc.kill()
            proc.wait()
    assert broker.bootstrap_file.read_text() == address


def test_only_this_starts_lines_count(tmp_path):
    broker = LocalBroker(tmp_path)
    broker.log_file.write_text("[old] INFO Kafka Server started\n")
    offset = broker.log_file.stat().st_size
    assert "Kafka Server started" not in broker._log_since(offset)
    with broker.log_file.open("a") as log:
        log.write("[new] INFO Kafka Server started\n")
    assert broker._log_since(offset) == "[new] INFO Kafka Server started\n"
