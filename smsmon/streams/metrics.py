"""The Prometheus metrics a worker exports; every label set is bounded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """All smsmon_* collectors, registered on the registry passed in (tests pass a fresh one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "smsmon_events_total",
            "Gateway events processed, by kind and declared category (none for mo/dlr).",
            ["kind", "category"],
            registry=registry,
        )
        self.alerts = Counter(
            "smsmon_alerts_total",
            "Alerts published, by rule and severity.",
            ["rule", "severity"],
            registry=registry,
        )
        self.alerts_suppressed = Counter(
            "smsmon_alerts_suppressed_total",
            "Alerts not published because an approved, unexpired exemption covers them.",
            ["rule", "severity"],
            registry=registry,
        )
        self.invalid = Counter(
            "smsmon_invalid_events_total",
            "Records sent to the dead-letter topic, by reason and source.",
            ["reason", "source"],
            registry=registry,
        )
        self.rekeyed = Counter(
            "smsmon_rekeyed_total",
            "Records forwarded once through the re-keying topic because the producer's "
            "partitioner placed them on another partition than smsmon's.",
            ["topic"],
            registry=registry,
        )
        self.reference_entries = Gauge(
            "smsmon_reference_entries",
            "Reference entries held: ports, signatures (every worker holds all), consent "
            "(msisdn x enterprise pairs in this worker's active partitions).",
            ["table"],
            registry=registry,
        )
        self.unsubscribes = Counter(
            "smsmon_unsubscribes_total",
            "Unsubscribe replies, by whether they could be attributed to an enterprise.",
            ["attributed"],
            registry=registry,
        )
        self.consent_updates = Counter(
            "smsmon_consent_updates_total",
            "Consent records applied to state, by result (applied, same, stale, deleted).",
            ["result"],
            registry=registry,
        )
        self.duplicates = Counter(
            "smsmon_duplicate_events_total",
            "Events skipped because their event_id was seen recently.",
            registry=registry,
        )
        self.detection_latency = Histogram(
            "smsmon_detection_latency_seconds",
            "From event receipt by the worker to its alert acknowledged by Kafka.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "smsmon_batch_events",
            "Records per processed batch.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10_000, 20_000),
            registry=registry,
        )
        self.transaction_seconds = Histogram(
            "smsmon_transaction_seconds",
            "Duration of a batch's Kafka transaction (begin to commit acknowledged).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.transaction_retries = Counter(
            "smsmon_transaction_retries_total",
            "Batch transactions that failed before their commit (the broker away) and were "
            "retried on a new transactional producer.",
            registry=registry,
        )
        self.batch_wait = Counter(
            "smsmon_batch_wait_seconds_total",
            "Time the stage-1 batch loop waited instead of processing: for the batches' lock "
            "(reason=lock: the watermark tick, reference validation) or for the previous "
            "batch's transaction to commit (reason=transaction).",
            ["reason"],
            registry=registry,
        )
        self.transaction_grouped = Counter(
            "smsmon_transaction_grouped_total",
            "Commit requests (a batch of one agent, a watermark tick) that rode in a "
            "transaction another request started (group commit).",
            registry=registry,
        )
        self.processing_errors = Counter(
            "smsmon_processing_errors_total",
            "Records whose processing raised; isolated to the dead-letter topic.",
            ["stage"],
            registry=registry,
        )
        self.ready = Gauge(
            "smsmon_reference_ready",
            "1 once the port and signature registries are loaded and events are processed.",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "smsmon_consumer_lag",
            "Records not yet processed per assigned input partition (high watermark minus "
            "next offset to process).",
            ["topic", "partition"],
            registry=registry,
        )
        self.standby_direct_writes = Counter(
            "smsmon_standby_direct_writes_total",
            "Changelog records of standby table partitions written to RocksDB by smsmon's "
            "direct path (streams/faust_compat.py); the rest take Faust's recovery path.",
            registry=registry,
        )
        self.unsubscribes_unattributed = Counter(
            "smsmon_unsubscribes_unattributed_total",
            "Unsubscribes that named no enterprise: reason=evicted (the sender was pushed out "
            "of the subscriber's memory by SMSMON_RECENT_PORTS_PER_MSISDN), unknown_sender "
            "(no mt from that port within SMSMON_RECENT_HORIZON_DAYS).",
            ["reason"],
            registry=registry,
        )
        for reason in ("evicted", "unknown_sender"):
            self.unsubscribes_unattributed.labels(reason)
        self.marketing_alerts = Counter(
            "smsmon_marketing_alerts_total",
            "Alerts about marketing messages by rule and by the marketing sector recognised in "
            "the text (retail, finance, other).",
            ["rule", "sector"],
            registry=registry,
        )
        self.refetched = Counter(
            "smsmon_input_refetched_total",
            "Input records the consumer loop left unprocessed to fetch them again: "
            "reason=stale_fetch (fetched before a seek moved the position back), "
            "given_up (a batch given up because a rebalance came first), "
            "dropped_by_getmany (handed out by aiokafka, never yielded by Faust's getmany).",
            ["reason"],
            registry=registry,
        )
        self.skipped = Counter(
            "smsmon_input_skipped_total",
            "Input offsets passed without processing a record: reason=repeated_id (an event "
            "or complaint id in its subscriber's recent-id window), offset_gap (no record at "
            "the offset: transaction markers, compaction).",
            ["reason"],
            registry=registry,
        )
        for reason in ("stale_fetch", "given_up"):
            self.refetched.labels(reason)
        self.rebalances = Counter(
            "smsmon_rebalances_total",
            "Consumer-group rebalances this worker took part in.",
            registry=registry,
        )
        self.build_info = Gauge(
            "smsmon_build_info",
            "Always 1; labels carry the smsmon version and wire-contract major version.",
            ["version", "schema_version"],
            registry=registry,
        )
        self.late_events = Counter(
            "smsmon_late_events_total",
            "Events older than their window's watermark plus grace: dropped from windows.",
            registry=registry,
        )
        self.complaints = Counter(
            "smsmon_complaints_total",
            "12321 complaints, by whether they could be attributed to a port or signature.",
            ["attributed"],
            registry=registry,
        )
        self.window_messages = Gauge(
            "smsmon_window_messages",
            "Messages in the last closed 1-minute window for the top 10 subjects per type "
            "(ports, signatures, accounts; never subscribers).",
            ["subject_type", "subject"],
            registry=registry,
        )
        self.recovering = Gauge(
            "smsmon_recovering",
            "1 while tables restore from their changelogs after a rebalance (worker is blind).",
            registry=registry,
        )
