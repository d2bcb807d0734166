"""A fast path in Faust's per-message consumer loop (faust-streaming 0.15.3).

Faust's `Consumer._drain_messages` hands every fetched record to the conductor with

    await self.wait_first(callback(message), self.suspend_flow.wait())

so that a delivery blocked on a full stream buffer, on suspended flow control or on a full
producer buffer can be abandoned when a rebalance suspends the flow. `wait_first` wraps four
awaitables in tasks (the callback, `suspend_flow`, and the service's `stopped` and
`crashed` events) and runs `asyncio.wait` over them: per record. In a py-spy profile of the
worker at full rate that was about 10 % of the event loop's time, more than all of stage 2.

The patched loop checks, synchronously and just before the call, every condition under
which the delivery could block: flow control suspended, `suspend_flow` set, Faust's
producer buffer over its limit (`wait_until_ebb` would flush), or a full queue of any
channel of the record's topic-partition. If none holds, `on_message` runs to completion
without suspending (the queue puts are `put_nowait`), so it is awaited directly; otherwise
the record takes Faust's own `wait_first` path unchanged. Everything else (read offsets,
gap tracking, `commit_every`, yielding every 100 records, errors) is Faust's code as it is.

Applied only to the Faust versions listed in `PATCHED_VERSIONS`, whose loop this copies;
with any other version, or with `SMSMON_FAST_DRAIN=false`, Faust's loop runs unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PATCHED_VERSIONS = ("0.15.3",)
_ORIGINAL: dict[str, Any] = {}


def apply_fast_drain(enabled: bool) -> bool:
    """Install (or, with `enabled` false, remove) the fast path; True if it is installed."""
    import faust
    from faust.transport.consumer import Consumer

    if "drain" not in _ORIGINAL:
        _ORIGINAL["drain"] = Consumer._drain_messages
    if not enabled or faust.__version__ not in PATCHED_VERSIONS:
        Consumer._drain_messages = _ORIGINAL["drain"]  # type: ignore[method-assign]
        if enabled:
            log.warning(
                "faust-streaming %s: consumer fast path not applied (written for %s)",
                faust.__version__,
                ", ".join(PATCHED_VERSIONS),
            )
        return False
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    return True


def blocker(consumer: Any) -> Callable[[Any], bool]:
    """`may_block(message)`: True if delivering it through the conductor could suspend.

    The objects it looks at are fixed for the consumer's lifetime (the events, the flow
    control, the producer buffer, the conductor's index, which is updated in place); only
    their state is read per record."""
    app = consumer.app
    suspended = consumer.suspend_flow.is_set
    flow_active = app.flow_control.is_active
    buffer = app.producer.buffer
    channels_of = app.topics._tp_index.get

    def may_block(message: Any) -> bool:
        if suspended() or not flow_active() or buffer.size > buffer.max_messages:
            return True
        channels = channels_of(message.tp)
        if channels:
            for chan in channels:
                if chan.queue.full():
                    return True
        return False

    return may_block


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover
    # faust-streaming 0.15.3 faust/transport/consumer.py Consumer._drain_messages (BSD
    # licence), with the fast path marked below.
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    from faust.transport.consumer import CONSUMER_FETCHING

    flag_consumer_fetching = CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    may_block = blocker(self)
    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = getmany(timeout=1.0)

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # We have a gap in income messages
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        # smsmon: the fast path
                        if may_block(message):
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        else:
                            await callback(message)
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)
