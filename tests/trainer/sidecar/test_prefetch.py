"""The poller decodes only inside the trainer's windows (pure coordination: a stand-in source)."""

from __future__ import annotations

import time
from typing import Any

from trainer.sidecar.consume import Decoded, Prefetcher


class CountingSource:
    """What a Prefetcher calls on a SampleSource: every fetch returns one message; each decode
    records whether the trainer's window was open at the time."""

    drained = False

    def __init__(self) -> None:
        self.fetches = 0
        self.decoded_in_window: list[bool] = []
        self.prefetch: Prefetcher | None = None

    def fetch(self, max_messages: int, timeout_s: float) -> list[Any]:
        self.fetches += 1
        return [self.fetches]

    def decode(self, messages: list[Any]) -> list[Decoded]:
        assert self.prefetch is not None
        self.decoded_in_window.append(self.prefetch._window.is_set())
        return [Decoded(0, m, None, "stand-in") for m in messages]

    def lag(self) -> dict[int, int]:
        return {}

    def commit(self, offsets: dict[int, int], wait: bool) -> bool:
        return True


def wait_for(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_the_poller_fetches_at_any_time_but_decodes_only_inside_a_window() -> None:
    source = CountingSource()
    prefetch = Prefetcher(source, max_messages=1, poll_s=0.01)  # type: ignore[arg-type]
    source.prefetch = prefetch
    prefetch.start()
    try:
        wait_for(lambda: source.fetches >= 1)  # fetched, then holds its decoding: no window yet
        assert source.decoded_in_window == []
        first = prefetch.get(30.0)  # a wait for messages is a window
        assert [d.offset for d in first] == [1]
        with prefetch.window():  # as around a train step
            wait_for(lambda: len(source.decoded_in_window) >= 2)
        assert prefetch.get(30.0)[0].offset == 2
        assert source.decoded_in_window and all(source.decoded_in_window), source.decoded_in_window
    finally:
        prefetch.stop()
    assert not prefetch.running
