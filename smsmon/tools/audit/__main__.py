"""`python -m smsmon.tools.audit ...` (same as `smsmon audit ...`)."""

import sys

from smsmon.tools.audit.cli import main

sys.exit(main())
