"""Security against a real broker with a SASL listener: authentication (SCRAM-SHA-512, PLAIN),
a clear bounded failure on wrong credentials, no secrets in logs, and the metrics bind address.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsmon.tools.scenario import Builder
from tests.integration.conftest import Env, Worker, wait_until
from tests.integration.reliability import (
    LocalBroker,
    assert_alert_set,
    env_on,
    event_rows,
    local_broker,
    produce_reference,
    produce_rows,
    wait_settled,
)

# Fault-injection tests: `make test` runs them last (-m reliability); `make test-reliability` alone.
pytestmark = [pytest.mark.integration, pytest.mark.reliability]

USER, PASSWORD = "smsmon", "smsmon-secret"  # created by scripts/kafka-local.sh --sasl
WRONG_PASSWORD = "not-the-password-4711"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A dedicated broker with PLAINTEXT on `port` and SASL_PLAINTEXT on `port + 2`."""
    with local_broker(tmp_path_factory.mktemp("kafka-sasl"), sasl=True) as broker:
        yield broker


@pytest.fixture
def senv(sasl_broker: LocalBroker, tmp_path: Path) -> Iterator[Env]:
    """Test clients use the PLAINTEXT listener; workers get the SASL one via `sasl()`."""
    with env_on(sasl_broker, tmp_path) as env:
        yield env


def sasl(broker: LocalBroker, mechanism: str, password: str) -> dict[str, str]:
    return {
        "SMSMON_KAFKA_BOOTSTRAP": broker.sasl_bootstrap,
        "SMSMON_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SMSMON_KAFKA_SASL_MECHANISM": mechanism,
        "SMSMON_KAFKA_SASL_USERNAME": USER,
        "SMSMON_KAFKA_SASL_PASSWORD": password,
    }


def wait_ready_at(worker: Worker, host: str, timeout: float = 120) -> str:
    """Wait until the worker's metrics at `host` say it is ready; return the page."""

    def ready() -> str | None:
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{worker.log()[-4000:]}")
        url = f"http://{host}:{worker.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            page = r.read().decode()
        return page if re.search(r"^smsmon_reference_ready 1\.0$", page, re.M) else None

    page: str = wait_until(ready, timeout, f"worker ready on {host}")
    return page


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_worker_authenticates_with_sasl_and_processes_events(
    sasl_broker: LocalBroker, senv: Env, mechanism: str
) -> None:
    """A worker on the SASL listener authenticates and gives the exact alert set; its log
    carries neither the password nor the msisdn secret."""
    scenario = Builder(seed=31).build(stories=400)
    worker = senv.start_worker("w1", **sasl(sasl_broker, mechanism, PASSWORD))
    wait_ready_at(worker, "127.0.0.1")
    produce_reference(senv, scenario, [worker])
    produce_rows(senv.bootstrap, senv.topic("sms.events"), event_rows(scenario.events))
    wait_settled(senv, [worker])
    assert_alert_set(senv, scenario.expected)
    log = worker.log()
    assert PASSWORD not in log
    assert "integration-test-secret" not in log
    assert worker.sample("smsmon_reference_ready") == 1.0


class UnclearErrorError(AssertionError):
    """The worker exited in time but its error does not say that authentication failed."""


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_wrong_password_fails_clearly_and_exits_within_bounded_time(
    sasl_broker: LocalBroker, senv: Env, mechanism: str
) -> None:
    """Wrong credentials: the worker exits non-zero within a bounded time (no hang), its last
    words name the listener, mechanism and user, say that authentication failed, and do not
    print the password it tried."""
    t0 = time.monotonic()
    worker = senv.start_worker("w1", **sasl(sasl_broker, mechanism, WRONG_PASSWORD))
    try:
        code = worker.proc.wait(timeout=120)
    except Exception:
        pytest.fail(f"still running after 120 s with a wrong password:\n{worker.log()[-3000:]}")
    elapsed = time.monotonic() - t0
    log = worker.log()
    print(f"{mechanism}: exited with {code} after {elapsed:.1f} s")
    assert code != 0, log[-3000:]
    assert WRONG_PASSWORD not in log and PASSWORD not in log
    final = [line for line in log.splitlines() if line.startswith("smsmon:")]
    assert final, f"no smsmon error line:\n{log[-2000:]}"
    assert sasl_broker.sasl_bootstrap in final[-1] and mechanism in final[-1], final[-1]
    assert repr(USER) in final[-1] and "credentials" in final[-1], final[-1]
    if not re.search(
        r"authenticat|credentials (were )?(rejected|refused|invalid)", final[-1], re.I
    ):
        raise UnclearErrorError(f"does not say that authentication failed: {final[-1]}")


def test_metrics_endpoint_binds_to_the_configured_address(kenv: Env) -> None:
    """SMSMON_METRICS_ADDR=127.0.0.2: the page is served there and not on 127.0.0.1."""
    worker = kenv.start_worker("w1", SMSMON_METRICS_ADDR="127.0.0.2")
    page = wait_ready_at(worker, "127.0.0.2")
    assert "smsmon_events_total" in page or "smsmon_reference_ready" in page
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5)
    assert "metrics at http://127.0.0.2:" in worker.log()
