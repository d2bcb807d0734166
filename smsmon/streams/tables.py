"""One batch's table writes: RocksDB plus the batched changelog, or Faust's per-key path.

What `table[key] = value` does for a plain (non-windowed) Faust table: put the value in the
RocksDB partition of the current event, then send one changelog record through Faust's
producer buffer, whose acknowledgement stores the changelog offset in that partition's
RocksDB ("persisted offset", where recovery resumes). `TableWriter` does the same put, adds
the changelog record to the batch's other output (`BatchOutput`: one aiokafka batch per
partition) and stores the persisted offset once per acknowledged batch. About a third of the
worker's time went to the per-key path (docs/performance.md). Deletes go the same way (a
tombstone), so a table's changelog keeps its order.

With `SMSMON_BATCHED_CHANGELOG=false`, or a store that is not RocksDB (the memory store of
the unit tests), writes take Faust's per-key path.

Under the transactional protocol (`deferred`, docs/reliability.md "The processing protocol")
`commit` applies nothing: the changelog records go out in the batch's transaction, and
`apply` writes each partition's RocksDB write batch after that transaction is committed,
with the partition's changelog offset in the same write batch (so a partition's RocksDB is
always at one committed batch boundary, whatever instant the process dies).
"""

from __future__ import annotations

import contextlib
from typing import Any

from rocksdict import WriteBatch

from smsmon.streams.app import bind_event
from smsmon.streams.faust_compat import (
    rocks_index_drop,
    rocks_index_put,
    rocks_offset_key,
    rocks_partition_db,
)
from smsmon.streams.output import BatchOutput

_UNSET = object()


class Sealed:
    """One batch's deferred table writes, set aside while its transaction commits."""

    __slots__ = ("batches", "values")

    def __init__(
        self,
        batches: dict[tuple[str, int], tuple[Any, Any]],
        values: dict[tuple[str, int], dict[bytes, bytes | None]],
    ) -> None:
        self.batches = batches
        self.values = values


class TableWriter:
    """Writes table values for the records of one agent's batches."""

    def __init__(self, out: BatchOutput, batched: bool, deferred: bool = False) -> None:
        self.out = out
        self.batched = batched
        self.deferred = deferred
        self._direct: dict[str, tuple[Any, str] | None] = {}
        # (table, partition) -> (RocksDB, write batch) of the writes not yet committed
        self._batches: dict[tuple[str, int], tuple[Any, Any]] = {}
        # deferred: (table, partition) -> key -> value (None: deleted) of those writes, and
        # the batches sealed for a transaction still committing (`seal`), oldest first; a
        # read sees them before RocksDB, which holds only committed state
        self._values: dict[tuple[str, int], dict[bytes, bytes | None]] = {}
        self._inflight: list[Sealed] = []

    def write(self, table: Any, key: bytes, value: bytes | None, writer: Any) -> None:
        """Set (or delete, for None) `key` in the partition of the Faust event `writer`."""
        direct = self.direct_store(table)
        if direct is None:
            bind_event(writer)
            if value is None:
                with contextlib.suppress(KeyError):
                    del table[key]
            else:
                table[key] = value
            return
        store, changelog = direct
        partition = writer.message.partition
        pending = self._batches.get((table.name, partition))
        if pending is None:
            db = rocks_partition_db(store, partition)
            if self.deferred and not store.use_rocksdict:
                raise RuntimeError("the transactional protocol needs rocksdict's WriteBatch")
            wb = WriteBatch(raw_mode=True) if store.use_rocksdict else db
            pending = self._batches[(table.name, partition)] = (db, wb)
        wb = pending[1]
        if self.deferred:
            self._values.setdefault((table.name, partition), {})[key] = value
        if value is None:
            wb.delete(key)  # a missing key is a no-op in RocksDB
            rocks_index_drop(store, key)
        else:
            wb.put(key, value)
            rocks_index_put(store, key, partition)
        self.out.add(changelog, key, value, partition=partition)  # None: tombstone

    def commit(self) -> None:
        """Apply the batch's writes: one RocksDB write batch per table partition.

        Call after the last `write` of a batch and before its output is flushed: reads of
        the same batch go through the caller's overlay, so nothing reads a key between its
        `write` and this commit. A write batch is also atomic in RocksDB. Deferred (the
        transactional protocol): nothing here; `apply` after the transaction's commit."""
        if self.deferred:
            return
        for db, wb in self._batches.values():
            if wb is not db:
                db.write(wb)
        self._batches.clear()

    def seal(self) -> Sealed:
        """Deferred: set the batch's writes aside for its transaction (`apply(last, sealed)`
        once it committed) so the next batch can be processed meanwhile; reads see them
        until they are applied."""
        sealed = Sealed(self._batches, self._values)
        self._batches, self._values = {}, {}
        self._inflight.append(sealed)
        return sealed

    def apply(self, last: dict[tuple[str, int], int], sealed: Sealed | None = None) -> None:
        """After the batch's transaction committed: write each partition's write batch with
        that partition's changelog offset (`last`: the offset of the last record sent per
        changelog (topic, partition)), then forget them. `sealed`: a batch set aside by
        `seal` (transactions commit in order, so the oldest); else the current one."""
        batches = self._batches if sealed is None else sealed.batches
        for (name, partition), (db, wb) in batches.items():
            store, changelog = self._direct[name]  # type: ignore[misc]
            offset = last.get((changelog, partition))
            if offset is not None:
                wb.put(rocks_offset_key(store), str(offset).encode())
            if wb is not db:
                db.write(wb)
        # in the same step as the RocksDB writes (no await in between): no read misses them
        if sealed is None:
            self._batches.clear()
            self._values.clear()
        else:
            self._inflight.remove(sealed)

    def discard(self) -> None:
        """Forget the batches' writes (their transactions did not commit)."""
        self._batches.clear()
        self._values.clear()
        self._inflight.clear()

    def read(self, table: Any, key: bytes, reader: Any) -> bytes | None:
        """The value of `key` in the partition of the Faust event `reader`.

        One RocksDB lookup: `table.get` checks `key in table` first (a second lookup) and
        goes through Faust's per-key callbacks."""
        direct = self.direct_store(table)
        if direct is None:
            bind_event(reader)
            value: bytes | None = table.get(key)
            return value
        partition = reader.message.partition
        if self._inflight or self._values:
            where = (table.name, partition)
            for values in (self._values, *(s.values for s in reversed(self._inflight))):
                written = values.get(where)
                if written is not None and key in written:
                    return written[key]
        value = rocks_partition_db(direct[0], partition).get(key)
        return value

    def direct_store(self, table: Any) -> tuple[Any, str] | None:
        """(RocksDB store, changelog topic) when writes to `table` bypass Faust's path."""
        if not self.batched:
            return None
        cached = self._direct.get(table.name, _UNSET)
        if cached is not _UNSET:
            return cached  # type: ignore[return-value]
        from faust.stores.rocksdb import Store as RocksStore
        from faust.types import TP

        store = table.data
        if not isinstance(store, RocksStore):
            self._direct[table.name] = None
            return None
        topic = table.changelog_topic.get_topic_name()

        def persisted(partition: int, offset: int, store: Any = store, topic: str = topic) -> None:
            store.set_persisted_offset(TP(topic, partition), offset)

        self.out.on_sent[topic] = persisted
        self._direct[table.name] = (store, topic)
        return store, topic
