import pytest
from pydantic import ValidationError

from citybrain.notify.settings import RetrySettings as NotifyRetry
from citybrain.platforms.settings import RetrySettings as CallbackRetry
from citybrain.retrypolicy import RetryPolicy


def test_the_wait_doubles_from_the_first_backoff_up_to_its_cap():
    policy = RetryPolicy(backoff_seconds=1.5, max_backoff_seconds=10)
    assert [policy.delay(n) for n in range(1, 6)] == [1.5, 3.0, 6.0, 10.0, 10.0]
    assert RetryPolicy(backoff_seconds=0).delay(7) == 0


def test_each_outbound_kind_keeps_its_own_attempts_and_the_shared_limits():
    assert NotifyRetry().attempts == 3 and CallbackRetry().attempts == 5
    assert NotifyRetry(backoff_seconds=2).delay(2) == CallbackRetry(backoff_seconds=2).delay(2) == 4.0
    for model in (NotifyRetry, CallbackRetry):
        with pytest.raises(ValidationError) as refused:
            model(attempts=0)
        assert refused.value.errors()[0]["loc"] == ("attempts",)
        with pytest.raises(ValidationError):
            model(jitter=True)   # a misspelt or unknown setting is refused, not ignored
