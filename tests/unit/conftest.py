"""Builders for the unit tests: reference records, events and engines from the wire contract."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pytest

from smsmon.contract.canonical import MsisdnHasher
from smsmon.contract.models import MoEvent, MtEvent, PortRecord, SignatureRecord
from smsmon.rules.engine import Engine, EngineConfig
from smsmon.rules.reference import ReferenceBook, signature_record_key

T0 = dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)
ALL_CATEGORIES = ("marketing", "notification", "verification")
SECRET = b"unit-test-secret"
KEY_ID = "k1"


class Factory:
    """Stateless builders with contract-valid defaults; override only what a test is about.

    Defaults describe a compliant marketing message: port 10690001 of ENT_A (not shared, account
    acc_a, every category), signature 【Taobao】 of ENT_A usable on any port, event port
    106900011234 (the registered code plus an extension).
    """

    t0 = T0
    msisdn = "13800138000"

    def at(self, seconds: float) -> dt.datetime:
        return T0 + dt.timedelta(seconds=seconds)

    def port(
        self,
        code: str = "10690001",
        enterprise: str = "ENT_A",
        *,
        accounts: Iterable[str] = ("acc_a",),
        categories: Iterable[str] = ALL_CATEGORIES,
        status: str = "active",
        shared: bool = False,
    ) -> PortRecord:
        return PortRecord.model_validate(
            {
                "port": code,
                "enterprise": enterprise,
                "accounts": list(accounts),
                "categories": list(categories),
                "status": status,
                "shared": shared,
            }
        )

    def sig(
        self,
        signature: str = "Taobao",
        enterprise: str = "ENT_A",
        *,
        ports: Iterable[str] = (),
        status: str = "active",
    ) -> SignatureRecord:
        return SignatureRecord.model_validate(
            {
                "signature": signature,
                "enterprise": enterprise,
                "ports": list(ports),
                "status": status,
            }
        )

    def book(
        self,
        ports: Iterable[PortRecord] | None = None,
        sigs: Iterable[SignatureRecord] | None = None,
    ) -> ReferenceBook:
        """A book keyed as the reference topics are: port code, normalised signature text."""
        book = ReferenceBook()
        for p in [self.port()] if ports is None else ports:
            book.put_port(p.port, p)
        for s in [self.sig()] if sigs is None else sigs:
            book.put_signature(signature_record_key(s), s)
        return book

    def mt(
        self,
        event_id: str = "mt-1",
        *,
        port: str = "106900011234",
        msisdn: str = "13800138000",
        account: str = "acc_a",
        category: str = "marketing",
        text: str = "【Taobao】spring sale, 20% off",
        signature: str | None = None,
        at: float = 0.0,
        **extra: Any,
    ) -> MtEvent:
        data: dict[str, Any] = {
            "event_id": event_id,
            "ts": self.at(at),
            "kind": "mt",
            "gateway": "gw1",
            "port": port,
            "msisdn": msisdn,
            "account": account,
            "category": category,
            "text": text,
            **extra,
        }
        if signature is not None:
            data["signature"] = signature
        return MtEvent.model_validate(data)

    def mo(
        self,
        event_id: str = "mo-1",
        *,
        port: str = "106900011234",
        msisdn: str = "13800138000",
        text: str = "TD",
        at: float = 0.0,
    ) -> MoEvent:
        return MoEvent.model_validate(
            {
                "event_id": event_id,
                "ts": self.at(at),
                "kind": "mo",
                "gateway": "gw1",
                "port": port,
                "msisdn": msisdn,
                "text": text,
            }
        )

    def engine(
        self,
        book: ReferenceBook | None = None,
        *,
        capacity: int = 128,
        horizon_ms: int = 30 * 86_400_000,
        secret: bytes = SECRET,
        key_id: str = KEY_ID,
    ) -> Engine:
        return Engine(
            self.book() if book is None else book,
            EngineConfig(
                hasher=MsisdnHasher(secret, key_id),
                recent_capacity=capacity,
                recent_horizon_ms=horizon_ms,
            ),
        )


@pytest.fixture(scope="session")
def f() -> Factory:
    """Contract-valid builders (stateless, so safe to share with hypothesis tests)."""
    return Factory()
