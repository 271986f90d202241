"""The worker's Faust app as built (nothing started: no broker is asked)."""

from citybrain.config import Config
from citybrain.kafka.clients import METADATA_MAX_AGE_MS
from citybrain.stream.app import create_app


def test_fausts_own_clients_refresh_their_metadata_like_every_other_client(tmp_path):
    """Faust's producer and consumer (the command routing) ask for leaders every 2 s, not
    Faust's 5 minutes: after a node hangs, a command goes to the partition's new leader."""
    app = create_app(Config(), "127.0.0.1:1", tmp_path)
    assert app.conf.consumer_metadata_max_age_ms == METADATA_MAX_AGE_MS
    producer_settings = app.producer._settings_default()   # what Faust hands AIOKafkaProducer
    assert producer_settings["metadata_max_age_ms"] == METADATA_MAX_AGE_MS
    # Its batches still wait out an outage rather than expire (a command is not dropped).
    assert producer_settings["request_timeout_ms"] >= 600_000
