"""`python -m smsmon.store`: the alert store service (see smsmon.store.cli)."""

import sys

from smsmon.store.cli import main

sys.exit(main())
