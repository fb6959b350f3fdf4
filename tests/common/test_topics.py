"""Topic creation reports an unreachable Kafka as the shared library's error, naming the address."""

from __future__ import annotations

import pytest

from common.errors import CommonError, TopicError
from common.topics import create_topics
from devstack.processes import free_port


def test_an_unreachable_broker_is_a_topic_error_naming_it() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    with pytest.raises(TopicError, match=f"cannot reach Kafka at {bootstrap}") as error:
        create_topics(bootstrap, {"impressions": (1, 0)}, timeout_s=1.0)
    assert isinstance(error.value, CommonError)
