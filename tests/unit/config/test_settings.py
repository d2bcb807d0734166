"""Settings: SMSMON_ environment variables, defaults, and validation with clear messages."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from smsmon.config.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without any SMSMON_ variable from the outer environment."""
    for name in list(os.environ):
        if name.upper().startswith("SMSMON_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_contract() -> None:
    """Without environment: localhost:9092, Asia/Shanghai, the contract's topic names."""
    s = Settings()
    assert s.kafka_bootstrap == "localhost:9092"
    assert s.timezone == "Asia/Shanghai"
    assert s.tz == ZoneInfo("Asia/Shanghai")
    assert (
        s.topic_events,
        s.topic_ports,
        s.topic_signatures,
        s.topic_consent,
        s.topic_alerts,
        s.topic_dlq,
    ) == (
        "sms.events",
        "sms.ref.ports",
        "sms.ref.signatures",
        "sms.ref.consent",
        "sms.alerts",
        "sms.events.dlq",
    )
    assert s.msisdn_secret is None
    assert isinstance(s.metrics_port, int)
    assert isinstance(s.data_dir, Path)


def test_required_settings_are_read_with_the_smsmon_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SMSMON_KAFKA_BOOTSTRAP, _METRICS_PORT, _DATA_DIR, _MSISDN_SECRET, _TIMEZONE are read."""
    monkeypatch.setenv("SMSMON_KAFKA_BOOTSTRAP", "broker-1:9093,broker-2:9093")
    monkeypatch.setenv("SMSMON_METRICS_PORT", "9200")
    monkeypatch.setenv("SMSMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SMSMON_MSISDN_SECRET", "s3cret")
    monkeypatch.setenv("SMSMON_TIMEZONE", "UTC")
    s = Settings()
    assert s.kafka_bootstrap == "broker-1:9093,broker-2:9093"
    assert s.metrics_port == 9200
    assert s.data_dir == tmp_path
    assert s.require_secret() == b"s3cret"
    assert s.tz == ZoneInfo("UTC")


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only SMSMON_-prefixed variables configure smsmon (KAFKA_BOOTSTRAP alone does not)."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "elsewhere:1")
    monkeypatch.setenv("TIMEZONE", "UTC")
    s = Settings()
    assert s.kafka_bootstrap == "localhost:9092"
    assert s.timezone == "Asia/Shanghai"


def test_secret_is_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The msisdn secret never appears in the settings' repr or str."""
    monkeypatch.setenv("SMSMON_MSISDN_SECRET", "very-secret-value")
    s = Settings()
    assert "very-secret-value" not in repr(s)
    assert "very-secret-value" not in str(s)


def test_missing_secret_refuses_with_a_clear_message() -> None:
    """Without SMSMON_MSISDN_SECRET the worker refuses to run and says which variable to set."""
    with pytest.raises(SystemExit) as info:
        Settings().require_secret()
    assert "SMSMON_MSISDN_SECRET" in str(info.value)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "Asia/Nowhere", "not a zone", "../etc/passwd"])
def test_invalid_timezone_is_rejected_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, tz: str
) -> None:
    """An unknown SMSMON_TIMEZONE fails validation naming the value and asking for IANA."""
    monkeypatch.setenv("SMSMON_TIMEZONE", tz)
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    assert "timezone" in message
    assert "IANA" in message


def test_invalid_metrics_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-numeric or out-of-range metrics port is a validation error."""
    for bad in ("http", "70000", "-1"):
        monkeypatch.setenv("SMSMON_METRICS_PORT", bad)
        with pytest.raises(ValidationError):
            Settings()


def test_explicit_arguments_override_defaults() -> None:
    """Settings can also be built in code (tests, tools) with keyword arguments."""
    s = Settings(kafka_bootstrap="127.0.0.1:19092", timezone="Europe/Berlin")
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.tz == ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("replicas", [0, 2])
def test_standby_replicas_reach_faust(
    replicas: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smsmon.streams.app import build_app

    monkeypatch.delenv("TABLE_STANDBY_REPLICAS", raising=False)
    monkeypatch.setenv("SMSMON_STANDBY_REPLICAS", str(replicas))
    monkeypatch.setenv("SMSMON_DATA_DIR", str(tmp_path))
    wiring = build_app(Settings())
    assert wiring.app.conf.table_standby_replicas == replicas


def test_standby_replicas_default_to_one_and_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().standby_replicas == 1
    monkeypatch.setenv("SMSMON_STANDBY_REPLICAS", "-1")
    with pytest.raises(ValidationError):
        Settings()


def test_tune_gc_sets_the_young_generation_threshold_only() -> None:
    import gc

    from smsmon.agents.worker import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc(100_000)
        assert gc.get_threshold() == (100_000, before[1], before[2])
    finally:
        gc.set_threshold(*before)


def test_gc_and_fetch_settings_have_the_measured_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSMON_MSISDN_SECRET", "s")
    s = Settings()
    assert (s.gc_threshold0, s.fetch_max_wait_ms) == (100_000, 100)
    monkeypatch.setenv("SMSMON_GC_THRESHOLD0", "500")
    with pytest.raises(ValueError):
        Settings()


def test_the_default_instance_id_is_the_host_and_a_hash_of_the_absolute_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Static membership: a worker restarted on its data dir keeps its id (however the dir
    is spelled), two workers on one machine with different data dirs get different ids."""
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "gw-node-7")
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("SMSMON_DATA_DIR", str(a))
    first = Settings().instance_id
    assert first.startswith("gw-node-7-") and len(first) == len("gw-node-7-") + 8
    assert Settings().instance_id == first  # restarted on the same data dir
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMSMON_DATA_DIR", "./a")  # the same dir, relative
    assert Settings().instance_id == first
    monkeypatch.setenv("SMSMON_DATA_DIR", str(b))
    assert Settings().instance_id != first


def test_a_host_name_outside_kafkas_alphabet_is_made_legal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from smsmon.config.settings import INSTANCE_ID

    monkeypatch.setattr(socket, "gethostname", lambda: "节点 1/东")
    monkeypatch.setenv("SMSMON_DATA_DIR", str(tmp_path))
    got = Settings().instance_id
    assert INSTANCE_ID.fullmatch(got), got


def test_an_explicit_instance_id_is_used_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSMON_INSTANCE_ID", "worker-3.zone_b")
    assert Settings().instance_id == "worker-3.zone_b"
    monkeypatch.setenv("SMSMON_INSTANCE_ID", "worker 3")
    with pytest.raises(ValidationError, match="instance_id"):
        Settings()


def test_a_heartbeat_above_a_third_of_the_session_timeout_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings()
    assert (s.session_timeout_seconds, s.heartbeat_interval_seconds) == (10.0, 2.0)
    monkeypatch.setenv("SMSMON_SESSION_TIMEOUT_SECONDS", "6")
    monkeypatch.setenv("SMSMON_HEARTBEAT_INTERVAL_SECONDS", "2.5")
    with pytest.raises(ValidationError, match="heartbeat"):
        Settings()
    monkeypatch.setenv("SMSMON_SESSION_TIMEOUT_SECONDS", "5")  # under the broker's 6 s
    monkeypatch.setenv("SMSMON_HEARTBEAT_INTERVAL_SECONDS", "1")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("static", [True, False])
def test_the_instance_id_and_session_reach_faust(
    static: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smsmon.streams.app import build_app

    for name in ("BROKER_SESSION_TIMEOUT", "BROKER_HEARTBEAT_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMSMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SMSMON_STATIC_MEMBERSHIP", str(static).lower())
    s = Settings()
    conf = build_app(s).app.conf
    assert conf.consumer_group_instance_id == (s.instance_id if static else None)
    assert (conf.broker_session_timeout, conf.broker_heartbeat_interval) == (10.0, 2.0)
