"""The alert filter: parsed and bounded from query strings or forms, turned into SQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import ColumnElement, and_

from smsmon.store.schema import CASE_STATUSES, Alert

SEVERITIES = ("critical", "major", "minor")
SORTS: dict[str, tuple[str, bool]] = {
    "-ts": ("ts", True),
    "ts": ("ts", False),
    "severity": ("severity", False),
    "rule": ("rule", False),
    "case_status": ("case_status", False),
}
"""Sort keys offered by the list; each sorts on a column that leads an index with `ts`."""

TEXT_FIELDS = ("rule", "enterprise", "signature", "port", "account", "gateway", "msisdn_hash")
PAGE_SIZES = (25, 50, 100, 200)


class FilterError(ValueError):
    """A filter value the console refuses; the message names the field."""


def _parse_time(value: str) -> dt.datetime:
    """`YYYY-MM-DDTHH:MM[:SS]` (the HTML datetime-local form) or a date, read as UTC."""
    value = value.strip()
    try:
        if len(value) == 10:
            d = dt.date.fromisoformat(value)
            return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError("expected YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


class AlertFilter(BaseModel):
    """What the officer asked for; every field optional, every value bounded."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    rule: str | None = Field(default=None, max_length=100)
    severity: Literal["critical", "major", "minor"] | None = None
    enterprise: str | None = Field(default=None, max_length=200)
    signature: str | None = Field(default=None, max_length=200)
    port: str | None = Field(default=None, max_length=32)
    account: str | None = Field(default=None, max_length=200)
    gateway: str | None = Field(default=None, max_length=200)
    msisdn_hash: str | None = Field(default=None, max_length=100)
    case_status: Literal["open", "acknowledged", "resolved", "false_positive"] | None = None

    @field_validator("since", "until", mode="before")
    @classmethod
    def _times(cls, v: Any) -> Any:
        if isinstance(v, str):
            return None if not v.strip() else _parse_time(v)
        return v

    @field_validator(*TEXT_FIELDS, "severity", "case_status", mode="before")
    @classmethod
    def _empty(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip():
            return None
        return v

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> AlertFilter:
        """From a query string or form; a bad value raises FilterError naming the field."""
        data = {k: params.get(k) for k in cls.model_fields if params.get(k) is not None}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "filter"
            raise FilterError(f"{where}: {err['msg']}") from None

    def where(self) -> list[ColumnElement[bool]]:
        """SQL conditions, all bound parameters."""
        conds: list[ColumnElement[bool]] = []
        if self.since is not None:
            conds.append(Alert.ts >= self.since)
        if self.until is not None:
            conds.append(Alert.ts < self.until)
        for name in (*TEXT_FIELDS, "severity", "case_status"):
            value = getattr(self, name)
            if value is not None:
                conds.append(getattr(Alert, name) == value)
        return conds

    def columns_filtered(self) -> int:
        """How many columns other than `ts` the filter compares."""
        return sum(getattr(self, n) is not None for n in (*TEXT_FIELDS, "severity", "case_status"))

    def clause(self) -> ColumnElement[bool]:
        return and_(True, *self.where())

    def as_params(self) -> dict[str, str]:
        """The filter as form/query values (times back in the datetime-local form)."""
        out: dict[str, str] = {}
        for name in self.model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, dt.datetime):
                out[name] = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M")
            else:
                out[name] = str(value)
        return out

    def query(self, **extra: str | int) -> str:
        """A query string of the filter plus `extra` (the hash may appear; a number never)."""
        params: dict[str, str | int] = dict(self.as_params())
        params.update(extra)
        return urlencode(params)

    def is_empty(self) -> bool:
        return not self.as_params()


assert set(CASE_STATUSES) == {"open", "acknowledged", "resolved", "false_positive"}
