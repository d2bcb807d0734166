"""`python -m smsmon.store` with every Kafka offset commit delayed by STORE_TEST_COMMIT_DELAY
seconds: fault injection for the exactness test, which must SIGKILL the store after a batch's
rows are committed in the database and before its offsets are. The delay only widens that
window; the code path is the real one."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from smsmon.store import service
from smsmon.store.cli import main
from smsmon.store.settings import StoreSettings

DELAY = float(os.environ.get("STORE_TEST_COMMIT_DELAY", "0.3"))
_real = service.kafka_consumer


def _slow_consumer(settings: StoreSettings) -> Any:
    consumer = _real(settings)
    commit = consumer.commit

    def slow_commit(*args: Any, **kwargs: Any) -> Any:
        time.sleep(DELAY)
        return commit(*args, **kwargs)

    consumer.commit = slow_commit
    return consumer


service.kafka_consumer = _slow_consumer

if __name__ == "__main__":
    sys.exit(main())
