"""`smsmon archive`: keep the records the rules need for months, beyond Kafka's retention.

A Kafka consumer group of its own (`<app_id>-archive`) reads the gateway events, the alerts,
the consent changes (including smsmon's own unsubscribe revocations) and the complaints, and
appends each record to `DIR/<topic>/<YYYY-MM-DD>.jsonl.gz`, dated by the record's event `ts`
in the configured timezone (the Kafka timestamp when the value has no usable `ts`). Each line
is the record's value exactly as produced (line breaks, which JSON only allows as whitespace,
become spaces); a deleted consent pair (null value) is kept as
`{"_key": "<msisdn>|<enterprise>", "_tombstone": true, "_timestamp": <Kafka ms>}`.
`smsmon audit --events DIR/sms.events --consent DIR/sms.ref.consent ...` reads them directly.

**Durability and exactly-once per directory.** Records are buffered and written every few
seconds as one gzip member per file (concatenated members are one valid gzip stream), then
fsynced; then `DIR/.archive-state.json` (the good length of every file and the next offset of
every partition) is replaced atomically; only then are the offsets committed to Kafka. On
start, a file longer than its recorded length (a crash mid-write) is cut back to it, and
records below the recorded offsets are skipped, so a crash anywhere neither loses nor
duplicates a record. One archiver per directory (a lock file enforces it).

**Retention.** Files dated more than `--retention-days` (default 183, about six months)
before today are deleted at start and every hour; records older than that are not written.
Consent files are kept forever by default (`--consent-retention-days`): consent is state, and
the grant that still stands may be years old; the audit needs it to judge last month.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import gzip
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter

from smsmon.config.settings import Settings
from smsmon.contract.models import Timestamp
from smsmon.contract.times import from_us, to_us
from smsmon.tools.audit.readers import fast_ts_us

log = logging.getLogger(__name__)

STATE_FILE = ".archive-state.json"
LOCK_FILE = ".archive.lock"
FILE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl\.gz$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TS: TypeAdapter[dt.datetime] = TypeAdapter(Timestamp)
_EARLIEST_US = to_us(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))


def record_date(
    value: bytes | None, kafka_ms: int | None, tz: ZoneInfo, max_skew_s: float
) -> dt.date:
    """The local date of a record: its `ts` if it has a usable one, else the Kafka timestamp."""
    us: int | None = None
    if value is not None:
        us = fast_ts_us(value, None, tz)
        if us is None:
            try:
                doc = json.loads(value)
                if isinstance(doc, dict) and "ts" in doc:
                    us = to_us(_TS.validate_python(doc["ts"], context={"tz": tz}))
            except (ValueError, TypeError, UnicodeDecodeError):
                us = None
    latest = to_us(dt.datetime.now(dt.UTC)) + int(max_skew_s * 1e6)
    if us is None or not _EARLIEST_US <= us <= latest:
        us = (
            kafka_ms if kafka_ms is not None and kafka_ms >= 0 else time.time_ns() // 10**6
        ) * 1000
    return from_us(us).astimezone(tz).date()


def archive_line(topic_is_consent: bool, key: bytes | None, value: bytes | None, ts: int) -> bytes:
    """One archive line (without the newline) for a record."""
    if value is None:
        if topic_is_consent and key is not None:
            doc = {
                "_key": key.decode("utf-8", errors="replace"),
                "_tombstone": True,
                "_timestamp": ts,
            }
            return json.dumps(doc, ensure_ascii=False).encode()
        return b"null"
    if b"\n" in value or b"\r" in value:
        value = value.replace(b"\r", b" ").replace(b"\n", b" ")
    return value


def good_gzip_prefix(path: Path) -> int:
    """Length of the leading run of complete gzip members of a file (all of it if intact)."""
    good = 0
    pos = 0
    d = zlib.decompressobj(wbits=31)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            data = chunk
            while data:
                try:
                    d.decompress(data)
                except zlib.error:
                    return good
                if d.eof:
                    used = len(data) - len(d.unused_data)
                    pos += used
                    good = pos
                    data = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                else:
                    pos += len(data)
                    data = b""
    return good


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArchiveStore:
    """The archive directory: buffered appends, fsync, the state file, recovery, retention."""

    def __init__(
        self, root: Path, tz: ZoneInfo, retention_days: int, keep: dict[str, int] | None = None
    ) -> None:
        self.root = root
        self.tz = tz
        self.retention_days = retention_days
        self.keep = keep or {}  # per-topic retention in days (0: forever)
        self.state_path = root / STATE_FILE
        self.files: dict[str, int] = {}  # relative path -> good length
        self.offsets: dict[str, int] = {}  # "topic:partition" -> next offset to archive
        self.buffers: dict[str, list[bytes]] = {}
        self.buffered = 0
        self.counts: Counter[str] = Counter()
        self._checked: set[str] = set()
        self._lock_fd: int | None = None

    # -- start-up -------------------------------------------------------------------------

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SystemExit(f"another `smsmon archive` is writing to {self.root}") from None
        self._lock_fd = fd
        if self.state_path.exists():
            doc = json.loads(self.state_path.read_text())
            self.files = {str(k): int(v) for k, v in doc.get("files", {}).items()}
            self.offsets = {str(k): int(v) for k, v in doc.get("offsets", {}).items()}
        for rel, size in list(self.files.items()):
            path = self.root / rel
            if not path.exists():
                self.files.pop(rel)
            elif path.stat().st_size > size:
                log.warning("%s: cutting an unfinished write back to %d bytes", path, size)
                os.truncate(path, size)
            self._checked.add(rel)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writing --------------------------------------------------------------------------

    def relpath(self, topic: str, day: dt.date) -> str:
        return f"{topic}/{day.isoformat()}.jsonl.gz"

    def cutoff(self, topic: str) -> dt.date | None:
        """The oldest date kept for `topic` (None: kept forever)."""
        days = self.keep.get(topic, self.retention_days)
        if days <= 0:
            return None
        return dt.datetime.now(self.tz).date() - dt.timedelta(days=days)

    def already(self, topic: str, partition: int, offset: int) -> bool:
        """True if this record was archived before (the directory's offsets are past it)."""
        return offset < self.offsets.get(f"{topic}:{partition}", -1)

    def add(self, topic: str, partition: int, offset: int, day: dt.date, line: bytes) -> None:
        key = f"{topic}:{partition}"
        self.offsets[key] = max(self.offsets.get(key, 0), offset + 1)
        cutoff = self.cutoff(topic)
        if cutoff is not None and day < cutoff:
            self.counts["expired"] += 1
            return
        rel = self.relpath(topic, day)
        self.buffers.setdefault(rel, []).append(line)
        self.buffered += len(line) + 1
        self.counts[topic] += 1

    def flush(self) -> None:
        """Write buffered lines (one gzip member per file), fsync, then save the state."""
        new_dirs: set[Path] = set()
        for rel, lines in self.buffers.items():
            path = self.root / rel
            if not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                new_dirs.add(path.parent.parent)
            if rel not in self._checked:
                self._checked.add(rel)
                if path.exists():
                    good = good_gzip_prefix(path)
                    if good < path.stat().st_size:
                        log.warning("%s: cutting a torn gzip member back to %d bytes", path, good)
                        os.truncate(path, good)
            created = not path.exists()
            data = gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6, mtime=0)
            with path.open("ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
                self.files[rel] = os.fstat(fh.fileno()).st_size
            if created:
                new_dirs.add(path.parent)
        for d in new_dirs:
            _fsync_dir(d)
        self.buffers.clear()
        self.buffered = 0
        self.save_state()

    def save_state(self) -> None:
        doc = {"version": 1, "files": self.files, "offsets": self.offsets}
        tmp = self.state_path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(doc, fh, indent=0, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)
        _fsync_dir(self.root)

    # -- retention ------------------------------------------------------------------------

    def sweep(self, topics: list[str]) -> list[Path]:
        """Delete archive files dated before the retention cutoff; returns what was deleted."""
        deleted: list[Path] = []
        for topic in topics:
            folder = self.root / topic
            cutoff = self.cutoff(topic)
            if cutoff is None or not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                m = FILE_RE.match(path.name)
                if m is None or not path.is_file():
                    continue
                try:
                    day = dt.date.fromisoformat(m.group(1))
                except ValueError:
                    continue
                if day < cutoff:
                    path.unlink()
                    self.files.pop(f"{topic}/{path.name}", None)
                    deleted.append(path)
        if deleted:
            log.info("retention: deleted %d old files", len(deleted))
            self.save_state()
        return deleted


class Archiver:
    """The consumer loop: poll, buffer, flush + commit, until stopped or idle."""

    def __init__(
        self,
        settings: Settings,
        root: Path,
        retention_days: int = 183,
        consent_retention_days: int = 0,
        until_idle: float | None = None,
        flush_seconds: float = 5.0,
        topics: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics or [
            settings.topic_events,
            settings.topic_alerts,
            settings.topic_consent,
            settings.topic_complaints,
        ]
        keep = {settings.topic_consent: consent_retention_days}
        self.store = ArchiveStore(root, settings.tz, retention_days, keep)
        self.until_idle = until_idle
        self.flush_seconds = flush_seconds
        self.stop = False
        self.consumer: Any = None
        self.last_activity = time.monotonic()
        self.assigned = False
        self.skipped = 0
        self.lock = threading.Lock()  # the store, shared with the rebalance callback

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        self.stop = True

    def _listener(self) -> Any:
        from kafka import ConsumerRebalanceListener

        archiver = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                # Runs on the client's IO thread, where blocking Kafka calls are refused: write
                # to disk only. The state file's offsets keep the next owner (this archiver,
                # after its own re-subscription) from writing anything twice.
                archiver.flush_to_disk()

            def on_partitions_assigned(self, assigned: Any) -> None:
                archiver.assigned = True
                archiver.last_activity = time.monotonic()
                log.info("archiving %d partitions", len(assigned))

        return Listener()

    def flush_to_disk(self) -> None:
        """Write what is buffered and the state file (no Kafka call: safe in a callback)."""
        with self.lock:
            if self.store.buffers:
                self.store.flush()
            elif self.store.offsets:
                self.store.save_state()

    def flush_and_commit(self) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        self.flush_to_disk()
        if self.consumer is None:
            return
        with self.lock:
            written = dict(self.store.offsets)
        offsets = {}
        for tp in self.consumer.assignment():
            nxt = written.get(f"{tp.topic}:{tp.partition}")
            if nxt is not None:
                offsets[TopicPartition(tp.topic, tp.partition)] = OffsetAndMetadata(nxt, "", -1)
        if offsets:
            from kafka.errors import KafkaError

            try:
                self.consumer.commit(offsets)
            except KafkaError as exc:  # e.g. a rebalance: the state file still has the offsets
                log.warning("offset commit failed (%s); the archive's state file keeps them", exc)

    def _existing(self) -> list[str]:
        known = self.consumer.topics()
        return [t for t in self.topics if t in known]

    def run(self) -> int:
        from kafka import KafkaConsumer

        from smsmon.admin import kafka_client_config

        s = self.settings
        store = self.store
        store.open()
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            store.sweep(self.topics)
            self.consumer = KafkaConsumer(
                # revocations on the consent topic are written in transactions
                isolation_level="read_committed",
                group_id=f"{s.app_id}-archive",
                client_id=f"{s.app_id}-archive",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                allow_auto_create_topics=False,
                max_poll_records=5000,
                **kafka_client_config(s),
            )
            subscribed: list[str] = []
            started = time.monotonic()
            last_flush = last_topics = 0.0
            last_sweep = time.monotonic()
            while not self.stop:
                now = time.monotonic()
                if now - last_topics >= 30.0:
                    last_topics = now
                    present = self._existing()
                    if present != subscribed:
                        missing = sorted(set(self.topics) - set(present))
                        if missing:
                            log.info("not (yet) present, will retry: %s", ", ".join(missing))
                        if present:
                            self.consumer.subscribe(present, listener=self._listener())
                        subscribed = present
                if not subscribed:
                    time.sleep(0.5)
                else:
                    batch = self.consumer.poll(timeout_ms=500, max_records=5000)
                    got = 0
                    for tp, records in batch.items():
                        consent = tp.topic == s.topic_consent
                        for r in records:
                            got += 1
                            if store.already(tp.topic, tp.partition, r.offset):
                                self.skipped += 1
                                continue
                            day = record_date(r.value, r.timestamp, s.tz, s.max_future_skew_seconds)
                            line = archive_line(consent, r.key, r.value, r.timestamp)
                            with self.lock:
                                store.add(tp.topic, tp.partition, r.offset, day, line)
                    if got:
                        self.last_activity = time.monotonic()
                now = time.monotonic()
                if store.buffers and (
                    now - last_flush >= self.flush_seconds or store.buffered >= 16 << 20
                ):
                    self.flush_and_commit()
                    last_flush = now
                if now - last_sweep >= 3600.0:
                    with self.lock:
                        store.sweep(self.topics)
                    last_sweep = now
                if self.until_idle is not None:
                    waited = now - self.last_activity
                    give_up = not self.assigned and now - started >= self.until_idle + 60.0
                    if (self.assigned and waited >= self.until_idle) or give_up:
                        log.info("no new records for %.0f s: stopping", waited)
                        break
            self.flush_and_commit()
            return 0
        finally:
            if self.consumer is not None:
                self.consumer.close(autocommit=False)
            store.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def summary(self) -> str:
        c = self.store.counts
        parts = [f"{t}={c[t]}" for t in self.topics if c[t]]
        return (
            f"archived {sum(c[t] for t in self.topics)} records ({', '.join(parts) or 'none'}); "
            f"{self.skipped} already archived, {c['expired']} older than the retention"
        )


# -- CLI ----------------------------------------------------------------------------------


def cmd_archive(settings: Settings, args: argparse.Namespace) -> int:
    """Archive events, alerts, consent and complaints as dated gzip JSONL files."""
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is per-connection chatter
    archiver = Archiver(
        settings,
        Path(args.dir),
        retention_days=args.retention_days,
        consent_retention_days=args.consent_retention_days,
        until_idle=args.until_idle,
        flush_seconds=args.flush_seconds,
    )
    code = archiver.run()
    print(archiver.summary())
    return code


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `smsmon archive`."""
    p = sub.add_parser(
        "archive",
        help=cmd_archive.__doc__,
        description="Consume sms.events, sms.alerts, sms.ref.consent and sms.complaints with "
        "the consumer group <app_id>-archive and append every record to "
        "DIR/<topic>/<YYYY-MM-DD>.jsonl.gz (date of its event ts). Runs until SIGTERM/SIGINT. "
        "See docs/audit.md.",
    )
    p.add_argument("--dir", required=True, help="archive directory")
    p.add_argument(
        "--retention-days",
        type=int,
        default=183,
        help="delete files dated more than this many days ago (default 183, ~6 months)",
    )
    p.add_argument(
        "--consent-retention-days",
        type=int,
        default=0,
        help="retention of consent files (default 0: forever; consent is state, and the record "
        "that stands may be years old)",
    )
    p.add_argument(
        "--until-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after no new records for this long (tests, one-off catch-up runs)",
    )
    p.add_argument(
        "--flush-seconds",
        type=float,
        default=5.0,
        help="write, fsync and commit at least this often (default 5)",
    )
    p.set_defaults(func=cmd_archive)


def main(argv: list[str] | None = None) -> int:
    """`python -m smsmon.tools.archive archive ...` (same as `smsmon archive ...`)."""
    parser = argparse.ArgumentParser(prog="smsmon")
    sub = parser.add_subparsers(dest="command", required=True)
    register_cli(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    result: int = args.func(Settings(), args)
    return result


if __name__ == "__main__":
    sys.exit(main())
