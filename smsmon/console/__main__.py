"""`python -m smsmon.console serve|add-user`."""

from __future__ import annotations

import sys

from smsmon.console.cli import main

sys.exit(main())
