"""The consumer fast path: awaited directly only when the delivery cannot block."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer

from smsmon.streams import faust_patches
from smsmon.streams.faust_patches import apply_fast_drain, blocker

pytestmark = pytest.mark.unit


class Queue:
    def __init__(self, full: bool) -> None:
        self._full = full

    def full(self) -> bool:
        return self._full


def consumer(
    *, suspended: bool = False, flow: bool = True, buffered: int = 0, full: bool = False
) -> Any:
    suspend_flow = asyncio.Event()
    if suspended:
        suspend_flow.set()
    tp = ("events", 3)
    channels = [SimpleNamespace(queue=Queue(False)), SimpleNamespace(queue=Queue(full))]
    app = SimpleNamespace(
        flow_control=SimpleNamespace(is_active=lambda: flow),
        producer=SimpleNamespace(buffer=SimpleNamespace(size=buffered, max_messages=100)),
        topics=SimpleNamespace(_tp_index={tp: channels}),
    )
    return blocker(SimpleNamespace(app=app, suspend_flow=suspend_flow)), SimpleNamespace(tp=tp)


def test_a_delivery_that_cannot_block_takes_the_fast_path() -> None:
    may_block, message = consumer()
    assert not may_block(message)


@pytest.mark.parametrize(
    "why",
    [
        {"suspended": True},  # a rebalance suspended the flow
        {"flow": False},  # flow control suspended
        {"buffered": 101},  # Faust's producer buffer would flush first
        {"full": True},  # one channel's stream buffer is full
    ],
)
def test_anything_that_could_block_takes_faust_s_path(why: dict[str, Any]) -> None:
    may_block, message = consumer(**why)
    assert may_block(message)


def test_installed_for_the_pinned_faust_only_and_removable(monkeypatch: pytest.MonkeyPatch) -> None:
    original = faust_patches._ORIGINAL.get("drain", Consumer._drain_messages)
    try:
        assert apply_fast_drain(True)
        assert Consumer._drain_messages is faust_patches._drain_messages
        assert not apply_fast_drain(False)
        assert Consumer._drain_messages is original
        import faust

        monkeypatch.setattr(faust, "__version__", "9.9.9")
        assert not apply_fast_drain(True)
        assert Consumer._drain_messages is original
    finally:
        Consumer._drain_messages = original  # type: ignore[method-assign]
