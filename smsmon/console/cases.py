"""Case handling: status changes of alerts, each kept in `case_events`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from smsmon.console.filters import AlertFilter
from smsmon.store.schema import Alert, CaseEvent

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("acknowledged", "resolved", "false_positive"),
    "acknowledged": ("resolved", "false_positive", "open"),
    "resolved": ("open",),
    "false_positive": ("open",),
}
"""Allowed moves: open -> acknowledged -> resolved | false_positive; a closed case may be
reopened (with a note saying why)."""
NOTE_MAX = 2000


class CaseError(ValueError):
    """A change the console refuses; the message says why."""


def sources_of(to_status: str) -> tuple[str, ...]:
    """Statuses from which `to_status` may be reached."""
    return tuple(src for src, dests in TRANSITIONS.items() if to_status in dests)


def _check(to_status: str, note: str) -> str:
    if not sources_of(to_status):
        raise CaseError(f"unknown case status {to_status!r}")
    note = note.strip()
    if len(note) > NOTE_MAX:
        raise CaseError(f"the note is longer than {NOTE_MAX} characters")
    if to_status == "open" and not note:
        raise CaseError("reopening a case needs a note saying why")
    return note


def _apply(
    s: Session, rows: Sequence[tuple[str, str]], to_status: str, note: str, actor: str
) -> int:
    now = dt.datetime.now(dt.UTC)
    for alert_id, from_status in rows:
        s.add(
            CaseEvent(
                alert_id=alert_id,
                from_status=from_status,
                to_status=to_status,
                note=note or None,
                actor=actor,
                at=now,
            )
        )
    ids = [a for a, _ in rows]
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        s.execute(
            update(Alert)
            .where(Alert.alert_id.in_(chunk), Alert.case_status.in_(sources_of(to_status)))
            .values(case_status=to_status)
        )
    return len(rows)


def change_one(s: Session, alert_id: str, to_status: str, note: str, actor: str) -> None:
    """Move one alert's case; refuses a move the current status does not allow."""
    note = _check(to_status, note)
    with s.begin():
        row = s.execute(
            select(Alert.alert_id, Alert.case_status)
            .where(Alert.alert_id == alert_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise CaseError("no such alert")
        if to_status not in TRANSITIONS.get(row.case_status, ()):
            raise CaseError(f"a case that is {row.case_status} cannot become {to_status}")
        _apply(s, [(row.alert_id, row.case_status)], to_status, note, actor)


def change_filtered(
    s: Session, flt: AlertFilter, to_status: str, note: str, actor: str, limit: int
) -> tuple[int, bool]:
    """Move every alert of the filter whose status allows it (at most `limit`, oldest
    first); returns (changed, more left)."""
    note = _check(to_status, note)
    with s.begin():
        rows = s.execute(
            select(Alert.alert_id, Alert.case_status)
            .where(flt.clause(), Alert.case_status.in_(sources_of(to_status)))
            .order_by(Alert.ts, Alert.alert_id)
            .limit(limit + 1)
            .with_for_update()
        ).all()
        more = len(rows) > limit
        changed = _apply(
            s, [(r.alert_id, r.case_status) for r in rows[:limit]], to_status, note, actor
        )
    return changed, more
