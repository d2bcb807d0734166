"""`smsmon audit`: the look-back review (回头看). Replays retained gateway records through the
live pipeline's rules, offline, in event-time order, and writes alerts, a summary and a report
(docs/audit.md).

The rules are not implemented here: records go through `OfflineRunner` (the same Engine,
Stage1 and Aggregator as the live agents), decoded by the worker's codec and joined against
reference data validated by the worker's `apply_reference`. What this package adds is reading
files and ordering:

- `readers`: input files (JSONL or CSV, plain or gzip), records as JSON bytes, fast sort keys;
- `ordering`: pass 1 (a sort key per line) and pass 2 (the k-way merge in
  `(ts, input kind, file, line)` order);
- `runner`: one run (`Audit`): reference data, the rule objects, both passes, the outputs;
- `collector`: the counts behind `summary.csv` and the report;
- `cli`: `smsmon audit`.
"""

from smsmon.tools.audit.cli import cmd_audit, main, parse_when, register_cli
from smsmon.tools.audit.ordering import INVALID, Source, merged
from smsmon.tools.audit.readers import (
    COMPLAINTS,
    CONSENT,
    EVENTS,
    AuditError,
    Reader,
    expand_inputs,
    fast_ts_us,
)
from smsmon.tools.audit.runner import Audit, AuditOptions, AuditResult

__all__ = [
    "COMPLAINTS",
    "CONSENT",
    "EVENTS",
    "INVALID",
    "Audit",
    "AuditError",
    "AuditOptions",
    "AuditResult",
    "Reader",
    "Source",
    "cmd_audit",
    "expand_inputs",
    "fast_ts_us",
    "main",
    "merged",
    "parse_when",
    "register_cli",
]
