"""Synthetic SMS gateway traffic with ground truth: `smsmon simulate` and `generate()`.

A seeded population (enterprises with 1066 commercial and 1069 notification ports, shared 10690
platform ports, signatures, accounts, subscribers with consent) sends traffic that follows a
daily rhythm; scenarios inject aggregate anomalies (bombing, sublet, spike, complaint wave) and
the Double 11 evening ramp; a sprinkle of per-message violations rides on top. Every injected
anomaly becomes a ground-truth row, every injected per-message violation an expected
(event_id, rule) pair. Generation is pure and streaming (no Kafka import at module level); the
Kafka writer imports kafka-python lazily. See docs/simulator.md.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import gzip
import heapq
import itertools
import json
import logging
import math
import random
import signal
import string
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from smsmon.tools.scenario import Reference

if TYPE_CHECKING:
    from smsmon.config.settings import Settings

log = logging.getLogger("smsmon.simulate")

SCENARIOS = ("normal", "double11", "bombing", "sublet", "complaints", "spike")
"""Scenario names accepted by `SimConfig.scenarios` and `--scenario`."""

RULE_FLOOD = "recipient.flood"
RULE_SUBLET = "port.sublet"
RULE_COMPLAINTS = "complaint.rate"
RULE_SPIKE = "volume.spike"

# Per-message rules of the wire contract (agents/rules/catalog.py holds the same ids).
PORT_UNREGISTERED = "port.unregistered"
PORT_SUSPENDED = "port.suspended"
PORT_ACCOUNT = "port.account"
PORT_CATEGORY = "port.category"
SIGNATURE_MISSING = "signature.missing"
SIGNATURE_UNREGISTERED = "signature.unregistered"
SIGNATURE_SCOPE = "signature.scope"
CONSENT_MISSING = "consent.missing"
CONSENT_REVOKED = "consent.revoked"

VIOLATIONS = (
    "unregistered_port",
    "suspended_port",
    "account_not_on_port",
    "wrong_category",
    "missing_signature",
    "unregistered_signature",
    "revoked_signature",
    "foreign_signature",
    "marketing_without_consent",
    "marketing_after_unsubscribe",
)
"""Kinds of per-message violation sprinkled at `SimConfig.violation_rate`."""

CATEGORIES = ("marketing", "notification", "verification")
MKT, NTF, VER = 0, 1, 2

Record = tuple[str, str, dict[str, Any]]
"""(topic kind `event` | `complaint`, Kafka key, value) as produced."""

# Relative volume by local hour (linearly interpolated between the hour marks, then normalised
# to a daily mean of 1): quiet nights, a late-morning peak, and for marketing the evening peak
# 20:00-22:00.
_PROFILES: tuple[tuple[float, ...], ...] = (
    (0.15, 0.06, 0.03, 0.03, 0.03, 0.05, 0.15, 0.45, 0.9, 1.3, 1.6, 1.6, 1.2, 1.1, 1.2, 1.25,
     1.25, 1.2, 1.25, 1.55, 2.1, 2.2, 2.1, 0.7),
    (0.2, 0.1, 0.08, 0.08, 0.1, 0.2, 0.5, 1.0, 1.5, 1.6, 1.6, 1.5, 1.3, 1.4, 1.5, 1.5,
     1.5, 1.4, 1.3, 1.2, 1.2, 1.0, 0.7, 0.4),
    (0.3, 0.15, 0.1, 0.08, 0.08, 0.15, 0.4, 0.9, 1.3, 1.4, 1.4, 1.3, 1.3, 1.2, 1.2, 1.2,
     1.2, 1.2, 1.3, 1.5, 1.7, 1.7, 1.3, 0.7),
)  # fmt: skip


def _normalised(points: tuple[float, ...]) -> tuple[float, ...]:
    mean = sum(points) / len(points)
    return tuple(p / mean for p in points)


PROFILES = tuple(_normalised(p) for p in _PROFILES)


def profile(category: int, local_hour: float) -> float:
    """Relative volume of a category at a local hour of day (daily mean 1)."""
    pts = PROFILES[category]
    h = local_hour % 24.0
    i = int(h)
    frac = h - i
    return pts[i] * (1.0 - frac) + pts[(i + 1) % 24] * frac


@dataclass(frozen=True, slots=True)
class _Sector:
    key: str
    suffixes: tuple[str, ...]
    mix: tuple[float, float, float]  # marketing, notification, verification
    weight: float


_SECTORS = (
    _Sector(
        "shop", ("商城", "优选", "严选", "好物", "特卖", "生鲜", "电器"), (0.5, 0.35, 0.15), 0.34
    ),
    _Sector("bank", ("银行", "农商银行"), (0.1, 0.5, 0.4), 0.12),
    _Sector("delivery", ("快递", "物流", "速运"), (0.05, 0.9, 0.05), 0.12),
    _Sector("travel", ("旅行", "酒店", "航空", "出行"), (0.3, 0.5, 0.2), 0.12),
    _Sector("food", ("外卖", "餐饮", "咖啡"), (0.35, 0.4, 0.25), 0.1),
    _Sector("finance", ("保险", "证券", "消费金融"), (0.15, 0.55, 0.3), 0.08),
    _Sector("service", ("影城", "大药房", "教育", "健身"), (0.3, 0.5, 0.2), 0.12),
)
_NAME_PREFIXES = (
    "优品", "乐购", "惠选", "拾光", "万家", "百汇", "鲜丰", "悦享", "小鹿", "云集",
    "安信", "华信", "瑞丰", "恒通", "金禾", "顺达", "速达", "云途", "锦程", "畅游",
    "途悦", "易行", "蓝海", "美味", "青禾", "嘉和", "盛世", "天润", "星河", "康宁",
    "初心", "明途", "东方", "南山", "北辰", "西湖", "长江", "泰和", "福瑞", "新禾",
)  # fmt: skip
_PLATFORM_NAMES = ("云讯通", "信达云", "快信平台", "速码云", "通达短信", "智信云")
_UNREGISTERED_SIGNATURES = (
    "某某商城", "某某优选", "好运来商贸", "鑫鑫贷款", "速借金融", "名表特卖", "红包福利",
)  # fmt: skip
_REGIONS = (
    "110000", "110105", "310000", "310115", "330100", "330106", "440300", "440106",
    "320500", "510100", "420100", "610100", "500000", "120000", "370200",
)  # fmt: skip
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_MSISDN_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "147", "150",
    "151", "152", "153", "155", "156", "157", "158", "159", "166", "172", "173", "175",
    "176", "177", "178", "180", "181", "182", "183", "184", "185", "186", "187", "188",
    "189", "191", "193", "195", "198", "199",
)  # fmt: skip
_GATEWAYS = ("gw-bj-1", "gw-sh-1", "gw-sh-2", "gw-gz-1")
_IP_BLOCKS = ("203.0.113", "198.51.100", "192.0.2")  # documentation ranges: synthetic
_SUBLET_IP_BLOCK = "198.18"  # benchmarking range: addresses no registered account uses
_OPTOUTS = ("回T退订", "回TD退订", "退订回T", "拒收请回复R", "回复TD退订", "退订回N")
_URLS = tuple(f"https://t.cn/A6{i:05x}" for i in range(0, 4096, 37))
_CITIES = ("北京", "上海", "广州", "深圳", "杭州", "成都", "三亚", "西安", "重庆", "厦门")
_UNSUBSCRIBE_TEXTS = (
    "TD", "T", "td", "退订", "退订！", "Ｔ", "TD退订", "别再发了，退订", "R", "取消",
    "拒收", "N", "stop",
)  # fmt: skip
_REPLY_TEXTS = ("好的", "收到", "谢谢", "1", "Y", "已收到，谢谢", "怎么还没发货", "？")
_COMPLAINT_TEXTS = (
    "未经同意发送营销短信",
    "回复退订后仍然收到",
    "每天多条广告骚扰",
    "从未注册过该平台却收到推销",
    None,
)
_DLR_STATUSES = ("DELIVRD",) * 95 + ("UNDELIV",) * 3 + ("EXPIRED", "REJECTD")

_MARKETING: dict[str, tuple[str, ...]] = {
    "shop": (
        "【{s}】会员日全场满{a}减{b}，叠加券更划算，戳 {url} {opt}",
        "【{s}】您关注的商品降价啦，限时{pct}折，库存有限，速抢 {url} {opt}",
        "【{s}】新人专享{b}元无门槛券已到账，3天内有效 {url} {opt}",
    ),
    "bank": (
        "【{s}】尊敬的客户，您有一笔最高{a}00元的信用额度待领取，详询手机银行 {opt}",
        "【{s}】信用卡积分兑换季开启，{a}积分兑好礼，登录APP参与 {opt}",
    ),
    "delivery": ("【{s}】寄件享{pct}折，首单立减{b}元，下单 {url} {opt}",),
    "travel": (
        "【{s}】{city}往返机票{a}元起，周末出游正当时 {url} {opt}",
        "【{s}】会员专享：{city}酒店{pct}折起，限时{m}天 {opt}",
    ),
    "food": ("【{s}】今日{b}元神券已发放，点击领取 {url} {opt}",),
    "finance": ("【{s}】新客理财专享，{m}天期产品火热认购中 {url} {opt}",),
    "service": ("【{s}】周末特惠，到店消费满{a}减{b} {url} {opt}",),
}
_DOUBLE11 = (
    "【{s}】双11预售今晚20点开启，付定金{b}抵{a}，前1小时下单再享{pct}折 {url} {opt}",
    "【{s}】双11狂欢倒计时！跨店每满300减50，付尾款立享 {url} {opt}",
    "【{s}】双11红包雨20点开抢，最高{a}元，记得来 {url} {opt}",
)
_NOTIFICATION: dict[str, tuple[str, ...]] = {
    "shop": (
        "【{s}】您的订单{order}已发货，运单号{waybill}，请注意查收。",
        "【{s}】您的退款{b}元已原路退回，请留意账户变动。",
    ),
    "bank": (
        "【{s}】您尾号{tail}的储蓄卡{hhmm}支出人民币{amt}元，余额请以APP为准。",
        "【{s}】您尾号{tail}的信用卡本期账单{amt}元，到期还款日{day}日。",
    ),
    "delivery": (
        "【{s}】您的快递已到驿站，取件码{code4}，请于今日取件。",
        "【{s}】您的包裹{waybill}正在派送中，快递员电话请在APP查看。",
    ),
    "travel": (
        "【{s}】您预订的{city}行程已出票，订单号{order}，请提前到达。",
        "【{s}】您的{city}酒店订单已确认，入住日{day}日。",
    ),
    "food": ("【{s}】骑手已接单，预计{m}分钟送达，订单号{order}。",),
    "finance": ("【{s}】您的保单{order}将于{day}日续费，金额{amt}元。",),
    "service": ("【{s}】您的预约已确认，订单号{order}，请准时到店。",),
}
_VERIFICATION = (
    "【{s}】您的验证码为{code}，{m}分钟内有效，请勿泄露给他人。",
    "【{s}】验证码：{code}，您正在登录，若非本人操作请忽略。",
    "您的验证码是{code}，{m}分钟内有效。【{s}】",
)
_UNSIGNED_NOTIFICATION = ("您的订单{order}已发货，请注意查收。", "您的预约已确认，请准时到店。")


# ---------------------------------------------------------------------------------------------
# configuration


def _today_midnight(tz: str) -> dt.datetime:
    now = dt.datetime.now(ZoneInfo(tz))
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class SimConfig:
    """What to simulate. Pass `start` explicitly for runs that must be reproducible."""

    seed: int = 1
    start: dt.datetime | None = None  # aware; None: today 00:00 in `timezone`
    duration: float = 86_400.0  # simulated seconds
    base_rate: float = 20.0  # mean events (mt+mo+dlr) per simulated second, daily average
    scenarios: frozenset[str] = frozenset({"normal"})
    violation_rate: float = 0.01  # fraction of background mt with a per-message violation
    enterprises: int = 30
    subscribers: int = 50_000
    consent_fraction: float = 0.6  # subscribers who consented to at least one enterprise
    revoked_fraction: float = 0.03  # of consent pairs, already revoked before the start
    platforms: int = 3  # shared 10690 platform ports
    suspended_ports: int = 3
    timezone: str = "Asia/Shanghai"
    incidents: int = 1  # injected incidents per anomaly scenario
    warmup: float | None = None  # no incident before this offset; None: min(1 h, span/4)
    dlr_fraction: float = 0.3  # delivery reports per mt
    reply_prob: float = 0.008  # non-unsubscribe mo replies per mt
    unsubscribe_prob: float = 0.005  # unsubscribe replies per marketing mt
    complaint_prob: float = 1e-4  # background 12321 complaints per marketing mt
    msisdn_variant_prob: float = 0.02  # mt with the msisdn field written as +86…
    double11_peak: float = 8.0  # marketing multiplier at the Double 11 evening peak
    bombing_messages: int | None = None  # None: 60-200 per incident
    sublet_per_minute: float = 20.0
    complaint_wave: int = 40  # complaints per wave
    recent_capacity: int = 8  # mirror of SMSMON_RECENT_PORTS_PER_MSISDN (unsubscribe attribution)
    msisdn_secret: bytes | None = None  # for the ground truth's msisdn_hash
    msisdn_key_id: str = "k1"

    def __post_init__(self) -> None:
        self.scenarios = frozenset(self.scenarios)
        unknown = sorted(self.scenarios - set(SCENARIOS))
        if unknown:
            raise ValueError(
                f"unknown scenario(s) {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}"
            )
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if self.duration <= 0 or self.base_rate < 0:
            raise ValueError("duration must be > 0 and base_rate >= 0")
        if not 0.0 <= self.violation_rate <= 1.0:
            raise ValueError("violation_rate must be between 0 and 1")
        if not 2 <= self.enterprises <= len(_NAME_PREFIXES) * 7:
            raise ValueError(f"enterprises must be between 2 and {len(_NAME_PREFIXES) * 7}")
        if self.subscribers < 100:
            raise ValueError("subscribers must be at least 100")
        if not 0 <= self.platforms <= len(_PLATFORM_NAMES):
            raise ValueError(f"platforms must be between 0 and {len(_PLATFORM_NAMES)}")
        if self.incidents < 0:
            raise ValueError("incidents must be >= 0")
        if self.double11_peak < 1:
            raise ValueError("double11_peak must be >= 1")

    def resolved_start(self) -> dt.datetime:
        """`start`, or today 00:00 in the configured timezone."""
        return self.start if self.start is not None else _today_midnight(self.timezone)


# ---------------------------------------------------------------------------------------------
# population


@dataclass(frozen=True, slots=True)
class Route:
    """Where an mt leaves from: port as sent, its registered code, account, source IP, gateway."""

    code: str
    port: str
    account: str
    ip: str
    gateway: str
    shared: bool


@dataclass
class Enterprise:
    """A sender: its identifier, signature, ports, accounts and traffic mix."""

    index: int
    uscc: str
    name: str
    sector: str
    weight: float
    mix: tuple[float, float, float]
    accounts: list[str]
    ips: dict[str, list[str]]
    gateway: dict[str, str]
    mkt_port: str
    ntf_port: str
    platform: int | None = None
    suspended_port: str | None = None
    revoked_signature: str | None = None
    sig_ports: list[str] = field(default_factory=list)
    routes: list[list[Route]] = field(default_factory=list)  # by category, equal-weight slots


@dataclass
class Platform:
    """A shared 10690 platform port carrying several enterprises' signatures."""

    uscc: str
    name: str
    port: str
    accounts: list[str]
    ips: dict[str, list[str]]
    gateway: str
    carried: list[int] = field(default_factory=list)


def _uscc(rng: random.Random, taken: set[str]) -> str:
    """A unified social credit code (统一社会信用代码) with a valid GB 32100 check character."""
    while True:
        org = "".join(rng.choice(_USCC_CHARS[:10] + "ABCDEFGHJKLMNPQRTUWXY") for _ in range(9))
        body = "91" + rng.choice(_REGIONS) + org
        total = sum(_USCC_CHARS.index(c) * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
        code = body + _USCC_CHARS[(31 - total % 31) % 31]
        if code not in taken:
            taken.add(code)
            return code


def uscc_valid(code: str) -> bool:
    """True if `code` is 18 characters with a correct GB 32100 check character."""
    if len(code) != 18 or any(c not in _USCC_CHARS for c in code):
        return False
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(code[:17], _USCC_WEIGHTS, strict=True))
    return code[17] == _USCC_CHARS[(31 - total % 31) % 31]


def _nice_ceiling(x: float) -> int:
    """Round up to 1, 2, 2.5 or 5 times a power of ten (quotas look like quotas)."""
    if x <= 1:
        return 1
    mag = 10.0 ** math.floor(math.log10(x))
    step = next(s for s in (1.0, 2.0, 2.5, 5.0, 10.0) if s * mag >= x)
    return math.ceil(step * mag)


def _rng(seed: int, stream: str) -> random.Random:
    # str seeds are hashed with SHA-512: deterministic whatever PYTHONHASHSEED is.
    return random.Random(f"smsmon-sim:{seed}:{stream}")


@dataclass
class Population:
    """Everything static: senders, ports, subscribers, consent."""

    enterprises: list[Enterprise]
    platforms: list[Platform]
    msisdns: list[str]
    ports: dict[str, dict[str, Any]]  # registered code -> port record
    signatures: dict[str, dict[str, Any]]  # signature text -> record
    consent_records: list[tuple[str, dict[str, Any]]]
    consenters: list[list[int]]  # by enterprise: subscriber indices with granted consent
    granted: set[int]  # pair keys (subscriber * n_enterprises + enterprise)
    revoked: set[int]  # pair keys revoked before the start
    unregistered_ports: list[str]
    route_share: dict[str, list[tuple[int, int, float]]]  # code -> (enterprise, category, share)

    def pair(self, subscriber: int, enterprise: int) -> int:
        """Compact key of a (subscriber, enterprise) pair."""
        return subscriber * len(self.enterprises) + enterprise


def _build_population(cfg: SimConfig, start: dt.datetime) -> Population:
    rng = _rng(cfg.seed, "population")
    ids: set[str] = set()
    codes: set[str] = set()

    def new_code(prefix: str, digits: int) -> str:
        while True:
            code = prefix + "".join(str(rng.randrange(10)) for _ in range(digits))
            if code not in codes:
                codes.add(code)
                return code

    def ips(n: int) -> list[str]:
        return [f"{rng.choice(_IP_BLOCKS)}.{rng.randrange(1, 255)}" for _ in range(n)]

    names = [(p, s, sec) for sec in _SECTORS for p in _NAME_PREFIXES for s in sec.suffixes]
    rng.shuffle(names)
    # Pick sectors by weight, then the first unused name of that sector.
    by_sector: dict[str, list[tuple[str, str, _Sector]]] = {}
    for n in names:
        by_sector.setdefault(n[2].key, []).append(n)
    used_prefix_sector: set[tuple[str, str]] = set()
    enterprises: list[Enterprise] = []
    sector_weights = [s.weight for s in _SECTORS]
    for i in range(cfg.enterprises):
        while True:
            sec = rng.choices(_SECTORS, weights=sector_weights)[0]
            pool = by_sector[sec.key]
            while pool and (pool[-1][0], sec.key) in used_prefix_sector:
                pool.pop()
            if pool:
                break
        prefix, suffix, _ = pool.pop()
        used_prefix_sector.add((prefix, sec.key))
        n_acct = 1 if rng.random() < 0.6 else 2
        accounts = [f"sp{i:03d}{'ab'[k]}" for k in range(n_acct)]
        enterprises.append(
            Enterprise(
                index=i,
                uscc=_uscc(rng, ids),
                name=prefix + suffix,
                sector=sec.key,
                weight=1.0 / (i + 1) ** 0.8,  # a few big senders, a long tail
                mix=sec.mix,
                accounts=accounts,
                ips={a: ips(rng.choice((1, 1, 2))) for a in accounts},
                gateway={a: rng.choice(_GATEWAYS) for a in accounts},
                mkt_port=new_code("1066", 4),
                ntf_port=new_code("1069" + str(rng.randrange(1, 10)), 3),
            )
        )
    total_w = sum(e.weight for e in enterprises)
    for e in enterprises:
        e.weight /= total_w

    platforms: list[Platform] = []
    for k in range(cfg.platforms):
        accounts = [f"plat{k}{'ab'[j]}" for j in range(2)]
        platforms.append(
            Platform(
                uscc=_uscc(rng, ids),
                name=_PLATFORM_NAMES[k],
                port=new_code("10690", 3),
                accounts=accounts,
                ips={a: ips(2) for a in accounts},
                gateway=rng.choice(_GATEWAYS),
            )
        )
    # Roughly a third of the enterprises also send through a platform.
    if platforms:
        for e in enterprises:
            if rng.random() < 0.35:
                e.platform = rng.randrange(len(platforms))
                platforms[e.platform].carried.append(e.index)
    for e in rng.sample(enterprises, min(cfg.suspended_ports, len(enterprises))):
        e.suspended_port = new_code("1066", 4)
    taken_sigs = {e.name for e in enterprises}
    for e in enterprises:
        if rng.random() < 0.2:
            old = e.name[:2] + "网"
            if old not in taken_sigs:
                taken_sigs.add(old)
                e.revoked_signature = old
        if rng.random() < 0.8:  # the rest may use any port (ports: [])
            e.sig_ports = [e.mkt_port, e.ntf_port]
            if e.suspended_port:
                e.sig_ports.append(e.suspended_port)
            if e.platform is not None:
                e.sig_ports.append(platforms[e.platform].port)
    unregistered = [new_code("1066", 4) for _ in range(16)]

    # Routes: equal-weight slots per category (an extension 扩展码 on some of them).
    route_share: dict[str, list[tuple[int, int, float]]] = {}
    for e in enterprises:
        own: list[Route] = []
        for a in e.accounts:
            for ip in e.ips[a]:
                own.append(Route("", "", a, ip, e.gateway[a], False))
        exts = [str(rng.randrange(10, 10_000)) for _ in range(3)]

        def own_routes(code: str, own: list[Route] = own, exts: list[str] = exts) -> list[Route]:
            out = []
            for r in own:
                out.extend([Route(code, code, r.account, r.ip, r.gateway, False)] * 4)
                out.extend(Route(code, code + x, r.account, r.ip, r.gateway, False) for x in exts)
            return out  # 4 of 7 slots without extension

        plat: list[Route] = []
        if e.platform is not None:
            p = platforms[e.platform]
            for a in p.accounts:
                for ip in p.ips[a]:
                    plat.append(Route(p.port, p.port, a, ip, p.gateway, True))
        mkt, ntf = own_routes(e.mkt_port), own_routes(e.ntf_port)
        # (slots, share) per category: with a platform, 30% of the traffic goes through it.
        plans: list[list[tuple[list[Route], float]]] = [
            [(mkt, 0.7), (plat, 0.3)] if plat else [(mkt, 1.0)],
            [(ntf, 0.6), (mkt, 0.1), (plat, 0.3)] if plat else [(ntf, 0.85), (mkt, 0.15)],
            [(ntf, 0.7), (plat, 0.3)] if plat else [(ntf, 1.0)],
        ]
        e.routes = []
        for c, plan in enumerate(plans):
            slots: list[Route] = []
            for routes, share in plan:
                reps = round(share * 20)
                for r in routes:
                    slots.extend([r] * reps)
                code = routes[0].code
                route_share.setdefault(code, []).append((e.index, c, share))
            e.routes.append(slots)

    # Subscribers and consent.
    seen: set[str] = set()
    msisdns: list[str] = []
    while len(msisdns) < cfg.subscribers:
        m = rng.choice(_MSISDN_PREFIXES) + f"{rng.randrange(10**8):08d}"
        if m not in seen:
            seen.add(m)
            msisdns.append(m)
    n_ent = len(enterprises)
    mkt_cum = list(itertools.accumulate(e.weight * (e.mix[MKT] + 0.05) for e in enterprises))
    consenters: list[list[int]] = [[] for _ in enterprises]
    granted: set[int] = set()
    revoked: set[int] = set()
    consent_records: list[tuple[str, dict[str, Any]]] = []
    sources = ("app", "web", "store", "sms")
    for i, m in enumerate(msisdns):
        if rng.random() >= cfg.consent_fraction:
            continue
        k = min(1 + int(rng.expovariate(0.7)), 5, n_ent)
        chosen: set[int] = set()
        while len(chosen) < k:
            chosen.add(min(bisect.bisect_right(mkt_cum, rng.random() * mkt_cum[-1]), n_ent - 1))
        for ei in sorted(chosen):
            e = enterprises[ei]
            at = start - dt.timedelta(days=rng.uniform(1, 400))
            is_revoked = rng.random() < cfg.revoked_fraction
            status = "revoked" if is_revoked else "granted"
            consent_records.append(
                (
                    f"{m}|{e.uscc}",
                    {
                        "msisdn": m,
                        "enterprise": e.uscc,
                        "status": status,
                        "ts": at.isoformat(timespec="seconds"),
                        "source": rng.choice(sources),
                    },
                )
            )
            key = i * n_ent + ei
            if is_revoked:
                revoked.add(key)
            else:
                granted.add(key)
                consenters[ei].append(i)

    # Reference records.
    ports: dict[str, dict[str, Any]] = {}
    for e in enterprises:
        ports[e.mkt_port] = {
            "port": e.mkt_port,
            "enterprise": e.uscc,
            "accounts": list(e.accounts),
            "categories": ["marketing", "notification"],
            "status": "active",
            "shared": False,
        }
        ports[e.ntf_port] = {
            "port": e.ntf_port,
            "enterprise": e.uscc,
            "accounts": list(e.accounts),
            "categories": ["notification", "verification"],
            "status": "active",
            "shared": False,
        }
        if e.suspended_port:
            ports[e.suspended_port] = {
                "port": e.suspended_port,
                "enterprise": e.uscc,
                "accounts": list(e.accounts),
                "categories": ["marketing", "notification"],
                "status": "suspended",
                "shared": False,
            }
    for p in platforms:
        ports[p.port] = {
            "port": p.port,
            "enterprise": p.uscc,
            "accounts": list(p.accounts),
            "categories": list(CATEGORIES),
            "status": "active",
            "shared": True,
        }
    pop = Population(
        enterprises=enterprises,
        platforms=platforms,
        msisdns=msisdns,
        ports=ports,
        signatures={},
        consent_records=consent_records,
        consenters=consenters,
        granted=granted,
        revoked=revoked,
        unregistered_ports=unregistered,
        route_share=route_share,
    )
    _set_quotas(pop, cfg)
    for e in enterprises:
        pop.signatures[e.name] = {
            "signature": e.name,
            "enterprise": e.uscc,
            "ports": list(e.sig_ports),
            "status": "active",
        }
        if e.revoked_signature:
            pop.signatures[e.revoked_signature] = {
                "signature": e.revoked_signature,
                "enterprise": e.uscc,
                "ports": [],
                "status": "revoked",
            }
    return pop


def _set_quotas(pop: Population, cfg: SimConfig) -> None:
    """`max_per_minute` on the notification port of every other enterprise and on every
    platform port.

    Sized at 3x the port's busiest expected minute (with marketing at the Double 11 peak on the
    platform ports, which carry marketing), so that ordinary traffic, the Double 11 evening
    included, stays under it: only the `spike` scenario breaks a quota.
    """
    model = _RateModel(pop, cfg)
    for code, shares in pop.route_share.items():
        rec = pop.ports[code]
        owner = next((e for e in pop.enterprises if e.uscc == rec["enterprise"]), None)
        if not rec["shared"] and (owner is None or owner.index % 2 == 1 or code != owner.ntf_port):
            continue
        peak = 0.0
        for step in range(24 * 6):
            hour = step / 6
            per_s = 0.0
            for ei, c, share in shares:
                boost = cfg.double11_peak if c == MKT else 1.0
                e = pop.enterprises[ei]
                per_s += model.mt_rate * e.weight * e.mix[c] * profile(c, hour) * boost * share
            peak = max(peak, per_s * 60)
        rec["max_per_minute"] = _nice_ceiling(max(30.0, 3 * peak + 5 * math.sqrt(peak)))


class _RateModel:
    """Expected mt rates: base rate split by category mix, daily profile and Double 11."""

    def __init__(self, pop: Population, cfg: SimConfig) -> None:
        self.cfg = cfg
        shares = [sum(e.weight * e.mix[c] for e in pop.enterprises) for c in range(3)]
        per_mt = 1.0 + cfg.dlr_fraction + cfg.reply_prob + cfg.unsubscribe_prob * shares[MKT]
        self.mt_rate = cfg.base_rate / per_mt
        self.shares = shares

    def enterprise_rate(self, e: Enterprise, hour: float, boost: float) -> float:
        """Expected mt per second of enterprise `e` at a local hour with a marketing boost."""
        return (
            self.mt_rate
            * e.weight
            * sum(e.mix[c] * profile(c, hour) * (boost if c == MKT else 1.0) for c in range(3))
        )


# ---------------------------------------------------------------------------------------------
# the plan of injected incidents


@dataclass
class Incident:
    """One injected anomaly: when, on what, and how (params are for the run)."""

    scenario: str
    start: float  # offsets from the simulation start, seconds
    end: float
    subjects: list[tuple[str, str, str]]  # (rule, subject_type, subject); msisdn raw, internal
    params: dict[str, Any] = field(default_factory=dict)


_DURATIONS = {"bombing": 300.0, "sublet": 600.0, "spike": 300.0, "complaints": 900.0}


class _Double11:
    """Marketing multiplier: 1 before 19:00, linear to the peak at 20:00, peak until 22:00,
    back to 1 at 23:00 (local). Spans without any 19:00-23:00 evening ramp over the span's
    second half instead (1 at the midpoint, the peak from three quarters on)."""

    def __init__(self, cfg: SimConfig, start: dt.datetime, tz: ZoneInfo) -> None:
        self.peak = cfg.double11_peak
        self.duration = cfg.duration
        self.start = start
        self.tz = tz
        self.evening = self._has_evening(start, cfg.duration, tz)

    @staticmethod
    def _has_evening(start: dt.datetime, duration: float, tz: ZoneInfo) -> bool:
        step = 600.0
        t = 0.0
        while t <= duration:
            h = (start + dt.timedelta(seconds=t)).astimezone(tz).hour
            if 19 <= h < 23:
                return True
            t += step
        return False

    def factor(self, t: float, local_hour: float) -> float:
        """Multiplier for marketing at offset `t` (local hour `local_hour`)."""
        p = self.peak
        if self.evening:
            h = local_hour
            if h < 19 or h >= 23:
                return 1.0
            if h < 20:
                return 1.0 + (p - 1.0) * (h - 19)
            if h < 22:
                return p
            return p - (p - 1.0) * (h - 22)
        x = t / self.duration
        if x < 0.5:
            return 1.0
        return 1.0 + (p - 1.0) * min(1.0, (x - 0.5) / 0.25)


def _plan(pop: Population, cfg: SimConfig, start: dt.datetime, tz: ZoneInfo) -> list[Incident]:
    rng = _rng(cfg.seed, "plan")
    kinds = [s for s in ("bombing", "sublet", "spike", "complaints") if s in cfg.scenarios]
    order = [k for _ in range(cfg.incidents) for k in kinds]  # round robin: spread each type
    if not order:
        return []
    warmup = cfg.warmup if cfg.warmup is not None else min(3600.0, cfg.duration / 4)
    longest = max(_DURATIONS[k] for k in order)
    zone = cfg.duration - warmup - longest - 60.0
    if zone < 0:
        raise ValueError(
            f"duration {cfg.duration:.0f}s is too short for scenario(s) {', '.join(kinds)}: "
            f"need warmup {warmup:.0f}s + {longest:.0f}s + 60s"
        )
    slot = zone / len(order)
    model = _RateModel(pop, cfg)
    d11 = _Double11(cfg, start, tz) if "double11" in cfg.scenarios else None
    used_ent: set[int] = set()
    used_msisdn: set[int] = set()
    by_size = sorted(pop.enterprises, key=lambda e: -e.weight)

    def fresh(cands: list[Enterprise]) -> Enterprise:
        for e in cands:
            if e.index not in used_ent:
                used_ent.add(e.index)
                return e
        return cands[len(used_ent) % len(cands)]

    out: list[Incident] = []
    for i, kind in enumerate(order):
        dur = _DURATIONS[kind]
        jitter = rng.uniform(0, max(0.0, slot - dur)) if slot > dur else 0.0
        t0 = round(warmup + i * slot + jitter, 3)
        inc = Incident(kind, t0, t0 + dur, [])
        if kind == "bombing":
            while True:
                target = rng.randrange(len(pop.msisdns))
                if target not in used_msisdn:
                    used_msisdn.add(target)
                    break
            n = cfg.bombing_messages or rng.randint(60, 200)
            senders: list[tuple[int, Route]] = []
            cands = rng.sample(pop.enterprises, min(len(pop.enterprises), rng.randint(12, 20)))
            for e in cands:
                senders.append((e.index, rng.choice(e.routes[VER])))
            weights = [rng.paretovariate(1.5) for _ in senders]
            inc.subjects = [(RULE_FLOOD, "msisdn", pop.msisdns[target])]
            inc.params = {"target": target, "n": n, "senders": senders, "weights": weights}
        elif kind == "sublet":
            cands = [
                e for e in by_size[::-1] if "max_per_minute" not in pop.ports[e.ntf_port]
            ] or by_size[::-1]
            victim = fresh(cands)
            others = [e for e in pop.enterprises if e.index != victim.index]
            foreign = rng.sample(others, min(len(others), rng.randint(4, 6)))
            n_acct = rng.randint(2, 3)
            accounts = [f"agent{rng.randrange(100, 999)}{k}" for k in range(n_acct)]
            ips = [
                f"{_SUBLET_IP_BLOCK}.{rng.randrange(0, 255)}.{rng.randrange(1, 255)}"
                for _ in accounts
            ]
            inc.subjects = [(RULE_SUBLET, "port", victim.ntf_port)]
            inc.params = {
                "port": victim.ntf_port,
                "foreign": [e.index for e in foreign],
                "accounts": list(zip(accounts, ips, strict=True)),
                "gateway": rng.choice(_GATEWAYS),
            }
        elif kind == "spike":
            # A mid-sized sender with a quota on its notification port (a code-pumping attack
            # or a runaway notification job): big enough to have a baseline, small enough that
            # the burst does not swamp the run.
            cands = [e for e in by_size if "max_per_minute" in pop.ports[e.ntf_port]] or by_size
            cands = cands[len(cands) // 2 :] + cands[: len(cands) // 2]
            e = fresh(cands)
            port = e.ntf_port
            quota = int(pop.ports[port].get("max_per_minute", 0))
            mid = start + dt.timedelta(seconds=t0 + dur / 2)
            hour = _local_hour(mid, tz)
            boost = d11.factor(t0 + dur / 2, hour) if d11 else 1.0
            normal = model.enterprise_rate(e, hour, boost) * 60
            per_min = max(1.5 * quota, 10.0 * normal, 60.0)
            account = rng.choice(e.accounts)
            inc.subjects = [
                (RULE_SPIKE, "port", port),
                (RULE_SPIKE, "signature", e.name),
                (RULE_SPIKE, "account", account),
            ]
            inc.params = {"enterprise": e.index, "account": account, "per_minute": per_min}
        else:  # complaints
            cands = sorted(pop.enterprises, key=lambda e: -e.weight * e.mix[MKT])
            e = fresh(cands)
            inc.subjects = [
                (RULE_COMPLAINTS, "signature", e.name),
                (RULE_COMPLAINTS, "port", e.mkt_port),
            ]
            inc.params = {"enterprise": e.index, "n": cfg.complaint_wave}
        out.append(inc)
    return out


def _iso(start: dt.datetime, tz: ZoneInfo, offset: float) -> str:
    ts = start + dt.timedelta(seconds=offset)
    return ts.astimezone(tz).isoformat(timespec="milliseconds")


def _local_hour(ts: dt.datetime, tz: ZoneInfo) -> float:
    local = ts.astimezone(tz)
    return local.hour + local.minute / 60 + local.second / 3600


# ---------------------------------------------------------------------------------------------
# the simulation and one run of it


class _Clock:
    """ISO-8601 strings (milliseconds, local offset) for offsets; cached per whole second."""

    __slots__ = ("_off", "_pre", "_sec", "epoch0", "tz")

    def __init__(self, start: dt.datetime, tz: ZoneInfo) -> None:
        self.epoch0 = start.timestamp()
        self.tz = tz
        self._sec = -1
        self._pre = ""
        self._off = ""

    def iso(self, t: float) -> str:
        sec, ms = divmod(int((self.epoch0 + t) * 1000), 1000)
        if sec != self._sec:
            s = dt.datetime.fromtimestamp(sec, self.tz).isoformat()
            self._sec, self._pre, self._off = sec, s[:19], s[19:]
        return f"{self._pre}.{ms:03d}{self._off}"


@dataclass
class Simulation:
    """A deterministic simulation: reference data, the incident plan and its ground truth.

    `records()` starts a fresh run and streams its records in ts order; each run is identical.
    """

    config: SimConfig
    start: dt.datetime
    tz: ZoneInfo
    population: Population
    incidents: list[Incident]
    reference: Reference
    truth: list[dict[str, Any]]

    @property
    def end(self) -> dt.datetime:
        """End of the simulated span (exclusive)."""
        return self.start + dt.timedelta(seconds=self.config.duration)

    def run(self) -> SimRun:
        """A fresh run: iterate `.records`; `.expected` and `.counts` fill as it goes."""
        return SimRun(self)

    def records(self) -> Iterator[Record]:
        """Records of a fresh run, in ts order: (`event`|`complaint`, key msisdn, value)."""
        return self.run().records

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def truth_until(self, offset: float | None) -> list[dict[str, Any]]:
        """Ground truth of the incidents begun by `offset` seconds (None: all), ends clipped."""
        if offset is None:
            return list(self.truth)
        out: list[dict[str, Any]] = []
        for inc, rows in zip(self.incidents, self._rows_by_incident(), strict=True):
            if inc.start > offset:
                continue
            for row in rows:
                if inc.end > offset:
                    row = dict(row, end=self._iso(offset), truncated=True)
                out.append(row)
        return out

    def _iso(self, offset: float) -> str:
        return _iso(self.start, self.tz, offset)

    def _rows_by_incident(self) -> list[list[dict[str, Any]]]:
        rows: list[list[dict[str, Any]]] = []
        i = 0
        for inc in self.incidents:
            rows.append(self.truth[i : i + len(inc.subjects)])
            i += len(inc.subjects)
        return rows


def _make_truth(
    start: dt.datetime, tz: ZoneInfo, incidents: list[Incident], cfg: SimConfig
) -> list[dict[str, Any]]:
    hasher: Callable[[str], str] | None = None
    if cfg.msisdn_secret:
        from smsmon.contract.canonical import MsisdnHasher

        hasher = MsisdnHasher(cfg.msisdn_secret, cfg.msisdn_key_id)
    rows: list[dict[str, Any]] = []
    for inc in incidents:
        for rule, stype, subject in inc.subjects:
            row: dict[str, Any] = {
                "scenario": inc.scenario,
                "rule": rule,
                "subject_type": stype,
                "subject": subject,
                "start": _iso(start, tz, inc.start),
                "end": _iso(start, tz, inc.end),
            }
            if stype == "msisdn":
                row["subject"] = f"{subject[:3]}****{subject[-4:]}"
                row["msisdn_hash"] = hasher(subject) if hasher else None
            if inc.scenario == "bombing":
                row["count"] = inc.params["n"]
                row["senders"] = len(inc.params["senders"])
            elif inc.scenario == "spike":
                row["per_minute"] = round(inc.params["per_minute"])
            elif inc.scenario == "complaints":
                row["count"] = inc.params["n"]
            rows.append(row)
    return rows


def generate(config: SimConfig) -> Simulation:
    """Build the population, reference data and incident plan for `config` (deterministic).

    Traffic is produced lazily by `Simulation.records()`, so large runs stream in constant
    memory (apart from per-subscriber state bounded by the population).
    """
    tz = ZoneInfo(config.timezone)
    start = config.resolved_start()
    pop = _build_population(config, start)
    incidents = _plan(pop, config, start, tz)
    ref = Reference(
        ports=[(code, rec) for code, rec in pop.ports.items()],
        signatures=[(sig, rec) for sig, rec in pop.signatures.items()],
        consent=list(pop.consent_records),
    )
    return Simulation(
        config=config,
        start=start,
        tz=tz,
        population=pop,
        incidents=incidents,
        reference=ref,
        truth=_make_truth(start, tz, incidents, config),
    )


_TICK = 10.0  # rates are re-evaluated every 10 simulated seconds
_Steps = Iterator[tuple[float, Callable[..., Record | None], tuple[Any, ...]]]
"""An incident's records to come: (offset, builder, builder arguments), in offset order."""


class SimRun:
    """One pass over the simulated span: a heap of scheduled records merged with background
    arrivals (a Poisson process whose rate is piecewise constant per tick)."""

    def __init__(self, sim: Simulation) -> None:
        cfg = sim.config
        self.sim = sim
        self.cfg = cfg
        self.pop = sim.population
        self.rng = _rng(cfg.seed, "traffic")
        self.clock = _Clock(sim.start, sim.tz)
        self.t = 0.0  # offset of the latest record
        self.expected: list[tuple[str, str]] = []  # (event_id, rule) of injected violations
        self.counts: Counter[str] = Counter()
        self.model = _RateModel(self.pop, cfg)
        self.d11 = _Double11(cfg, sim.start, sim.tz) if "double11" in cfg.scenarios else None
        self.boost = 1.0  # current Double 11 marketing multiplier
        self._field_gen = self._fields()
        self._template_fields: dict[str, tuple[tuple[str, Callable[[], object]], ...]] = {}
        self.revoked = set(self.pop.revoked)
        self.revoked_pairs = sorted(self.pop.revoked)
        self.recent: dict[int, dict[str, int]] = {}  # subscriber -> {port code: enterprise}
        self.heap: list[tuple[float, int, Callable[..., Record | None], tuple[Any, ...]]] = []
        self.incident_gens: dict[int, _Steps] = {}
        self.seq = 0
        self.n = 0
        self.nc = 0
        self.prefix = f"s{cfg.seed}-{int(sim.start.timestamp()):x}-"
        self.n_ent = len(self.pop.enterprises)
        self.port_owner = {
            code: (-1 if rec["shared"] else self._ent_of(rec["enterprise"]))
            for code, rec in self.pop.ports.items()
        }
        # Enterprise choice per category: cumulative weights.
        self.ent_cum: list[list[float]] = []
        for c in range(3):
            acc, cum = 0.0, []
            for e in self.pop.enterprises:
                acc += e.weight * e.mix[c]
                cum.append(acc)
            self.ent_cum.append(cum)
        # Complaint targets: remember who received their marketing on their own port.
        self.track: dict[int, tuple[list[tuple[int, str]], set[int]]] = {}
        self.complained: dict[int, set[int]] = {}
        for k, inc in enumerate(sim.incidents):
            if inc.scenario == "complaints":
                self.track.setdefault(inc.params["enterprise"], ([], set()))
            self.incident_gens[k] = getattr(self, f"_inc_{inc.scenario}")(inc)
        self.records: Iterator[Record] = self._iterate()

    # -- helpers ---------------------------------------------------------------------------

    def _ent_of(self, uscc: str) -> int:
        for e in self.pop.enterprises:
            if e.uscc == uscc:
                return e.index
        raise KeyError(uscc)

    def _push(self, t: float, fn: Callable[..., Record | None], args: tuple[Any, ...]) -> None:
        if t < self.cfg.duration:
            self.seq += 1
            heapq.heappush(self.heap, (t, self.seq, fn, args))

    def _next_incident(self, k: int) -> None:
        item = next(self.incident_gens[k], None)
        if item is not None:
            t, fn, args = item
            self._push(t, self._incident_step, (k, fn, args))

    def _incident_step(
        self, t: float, k: int, fn: Callable[..., Record | None], args: tuple[Any, ...]
    ) -> Record | None:
        rec = fn(t, *args)
        self._next_incident(k)
        return rec

    def _rates(self, t: float) -> tuple[float, list[float]]:
        hour = _local_hour(self.sim.start + dt.timedelta(seconds=t), self.sim.tz)
        boost = self.d11.factor(t, hour) if self.d11 else 1.0
        self.boost = boost
        base = self.model.mt_rate
        sh = self.model.shares
        lam = [base * sh[c] * profile(c, hour) * (boost if c == MKT else 1.0) for c in range(3)]
        return lam[0] + lam[1] + lam[2], [lam[0], lam[0] + lam[1]]

    def _iterate(self) -> Iterator[Record]:
        for k in list(self.incident_gens):
            self._next_incident(k)
        rnd = self.rng.random
        log_ = math.log
        heap = self.heap
        heappop = heapq.heappop
        end = self.cfg.duration
        background = self._background
        t = 0.0
        lam, cum = self._rates(0.0)
        tick_end = min(_TICK, end)
        while True:
            tn = t - log_(1.0 - rnd()) / lam if lam > 0 else math.inf
            is_bg = tn < tick_end
            if not is_bg:
                tn = tick_end
            while heap and heap[0][0] <= tn:
                ht, _, fn, args = heappop(heap)
                self.t = ht
                rec = fn(ht, *args)
                if rec is not None:
                    yield rec
            if is_bg:
                t = tn
                self.t = t
                yield background(t, lam, cum)
            else:
                t = tick_end
                if t >= end:
                    break
                tick_end = min(t + _TICK, end)
                lam, cum = self._rates(t)

    # -- text ------------------------------------------------------------------------------

    def _fields(self) -> dict[str, Callable[[], object]]:
        r = self.rng.random
        return {
            "a": lambda: (100, 200, 300, 500, 1000)[int(r() * 5)],
            "b": lambda: (5, 10, 20, 30, 50)[int(r() * 5)],
            "pct": lambda: ("5", "6.8", "7", "8", "8.8", "9")[int(r() * 6)],
            "url": lambda: _URLS[int(r() * len(_URLS))],
            # about 5% of marketing carries no opt-out (content.optout_missing, another rule)
            "opt": lambda: "" if r() < 0.05 else _OPTOUTS[int(r() * len(_OPTOUTS))],
            "city": lambda: _CITIES[int(r() * len(_CITIES))],
            "m": lambda: (3, 5, 10, 15)[int(r() * 4)],
            "order": lambda: f"{int(r() * 1e12):012d}",
            "waybill": lambda: f"YT{int(r() * 1e13):013d}",
            "tail": lambda: f"{int(r() * 1e4):04d}",
            "hhmm": lambda: f"{int(r() * 24):02d}:{int(r() * 60):02d}",
            "amt": lambda: f"{r() * 3000:.2f}",
            "day": lambda: 1 + int(r() * 28),
            "code": lambda: f"{int(r() * 1e6):06d}",
            "code4": lambda: f"{1 + int(r() * 9)}-{1 + int(r() * 9)}-{1000 + int(r() * 9000)}",
        }

    def _fill(self, template: str, sig: str) -> str:
        """The template with signature `sig` and fresh random values for its other fields."""
        fields = self._template_fields.get(template)
        if fields is None:
            names = {f for _, f, _, _ in string.Formatter().parse(template) if f and f != "s"}
            fields = tuple((n, self._field_gen[n]) for n in sorted(names))
            self._template_fields[template] = fields
        values = {name: gen() for name, gen in fields}
        values["s"] = sig
        return template.format_map(values).rstrip()

    def _marketing(self, e: Enterprise) -> str:
        r = self.rng.random
        tpls: tuple[str, ...]
        if self.boost > 1.5 and e.sector != "bank" and r() < 0.7:
            tpls = _DOUBLE11
        else:
            tpls = _MARKETING[e.sector]
        return self._fill(tpls[int(r() * len(tpls))], e.name)

    def _notification(self, e: Enterprise, sig: str | None = None) -> str:
        tpls = _NOTIFICATION[e.sector]
        return self._fill(tpls[int(self.rng.random() * len(tpls))], sig or e.name)

    def _verification(self, sig: str) -> str:
        return self._fill(_VERIFICATION[int(self.rng.random() * len(_VERIFICATION))], sig)

    def _text(self, e: Enterprise, c: int) -> str:
        if c == MKT:
            return self._marketing(e)
        if c == NTF:
            return self._notification(e)
        return self._verification(e.name)

    # -- records ---------------------------------------------------------------------------

    def _consenter(self, ei: int) -> int | None:
        """A subscriber with standing consent to enterprise `ei`, if one is found quickly."""
        pool = self.pop.consenters[ei]
        if not pool:
            return None
        r = self.rng.random
        for _ in range(4):
            s = pool[int(r() * len(pool))]
            if s * self.n_ent + ei not in self.revoked:
                return s
        return None

    def _background(self, t: float, lam: float, cum: list[float]) -> Record:
        r = self.rng.random
        x = r() * lam
        c = MKT if x < cum[0] else (NTF if x < cum[1] else VER)
        ecum = self.ent_cum[c]
        ei = min(bisect.bisect_right(ecum, r() * ecum[-1]), self.n_ent - 1)
        e = self.pop.enterprises[ei]
        if r() < self.cfg.violation_rate:
            return self._violation(t, e)
        sub: int | None
        if c == MKT:
            sub = self._consenter(ei)
            if sub is None:  # nobody left to market to: a notification instead
                c = NTF
        if c != MKT:
            sub = int(r() * len(self.pop.msisdns))
        assert sub is not None
        routes = e.routes[c]
        route = routes[int(r() * len(routes))]
        sig = None
        if r() < 0.1:  # some gateways also carry the signature in its own field
            sig = e.name if r() < 0.5 else f"【{e.name}】"
        return self._mt(t, sub, route, c, self._text(e, c), ei, (), signature=sig, sig_name=e.name)

    def _mt(
        self,
        t: float,
        sub: int,
        route: Route,
        c: int,
        text: str,
        ent: int,
        rules: tuple[str, ...],
        *,
        signature: str | None = None,
        sig_name: str | None = None,
    ) -> Record:
        """Emit one mt; `ent` is the enterprise the rules derive (-1 unknown), for 退订."""
        cfg = self.cfg
        r = self.rng.random
        self.n += 1
        eid = f"{self.prefix}{self.n:08d}"
        m = self.pop.msisdns[sub]
        ev: dict[str, Any] = {
            "event_id": eid,
            "ts": self.clock.iso(t),
            "kind": "mt",
            "gateway": route.gateway,
            "port": route.port,
            "msisdn": ("+86" + m) if r() < cfg.msisdn_variant_prob else m,
            "account": route.account,
            "category": CATEGORIES[c],
            "text": text,
        }
        if signature is not None:
            ev["signature"] = signature
        n_chars = len(text)
        ev["segments"] = 1 if n_chars <= 70 else -(-n_chars // 67)
        ev["source_ip"] = route.ip
        if ent >= 0:
            recent = self.recent.get(sub)
            if recent is None:
                self.recent[sub] = {route.code: ent}
            else:
                recent.pop(route.code, None)
                recent[route.code] = ent
                if len(recent) > cfg.recent_capacity:
                    del recent[next(iter(recent))]
        if r() < cfg.dlr_fraction:
            self._push(t + 1.0 + self.rng.expovariate(0.2), self._dlr, (sub, route, eid))
        if r() < cfg.reply_prob:
            self._push(t + 5.0 + self.rng.expovariate(1 / 300), self._mo, (sub, route, False))
        if c == MKT:
            if r() < cfg.unsubscribe_prob:
                self._push(t + 5.0 + self.rng.expovariate(1 / 300), self._mo, (sub, route, True))
            if sig_name is not None and r() < cfg.complaint_prob:
                delay = 600.0 + r() * 6 * 3600
                self._push(t + delay, self._complaint, (sub, route.port, sig_name))
            tracked = self.track.get(ent)
            if tracked is not None and route.code == self.pop.enterprises[ent].mkt_port:
                lst, seen = tracked
                if sub not in seen and len(lst) < 50_000:
                    seen.add(sub)
                    lst.append((sub, route.port))
        if rules:
            self.expected.extend((eid, rule) for rule in rules)
            self.counts["violations"] += 1
        self.counts[CATEGORIES[c]] += 1
        return ("event", m, ev)

    def _dlr(self, t: float, sub: int, route: Route, mt_id: str) -> Record:
        self.n += 1
        m = self.pop.msisdns[sub]
        self.counts["dlr"] += 1
        status = _DLR_STATUSES[int(self.rng.random() * len(_DLR_STATUSES))]
        return (
            "event",
            m,
            {
                "event_id": f"{self.prefix}{self.n:08d}",
                "ts": self.clock.iso(t),
                "kind": "dlr",
                "gateway": route.gateway,
                "port": route.port,
                "msisdn": m,
                "status": status,
                "mt_event_id": mt_id,
            },
        )

    def _mo(self, t: float, sub: int, route: Route, unsubscribe: bool) -> Record:
        r = self.rng.random
        self.n += 1
        m = self.pop.msisdns[sub]
        if unsubscribe:
            text = _UNSUBSCRIBE_TEXTS[int(r() * len(_UNSUBSCRIBE_TEXTS))]
            # Attribution as the contract states: the enterprise of the latest mt from this
            # port to this subscriber, else the port's enterprise if the port is not shared.
            recent = self.recent.get(sub)
            target = recent.get(route.code) if recent else None
            if target is None and not route.shared:
                owner = self.port_owner.get(route.code, -1)
                target = owner if owner >= 0 else None
            if target is not None:
                key = sub * self.n_ent + target
                if key not in self.revoked:
                    self.revoked.add(key)
                    self.revoked_pairs.append(key)
            self.counts["unsubscribes"] += 1
        else:
            text = _REPLY_TEXTS[int(r() * len(_REPLY_TEXTS))]
        self.counts["mo"] += 1
        return (
            "event",
            m,
            {
                "event_id": f"{self.prefix}{self.n:08d}",
                "ts": self.clock.iso(t),
                "kind": "mo",
                "gateway": route.gateway,
                "port": route.port,
                "msisdn": m,
                "text": text,
            },
        )

    def _complaint(
        self, t: float, sub: int, port: str, sig: str, *, text: str | None = None
    ) -> Record:
        r = self.rng.random
        self.nc += 1
        m = self.pop.msisdns[sub]
        rec: dict[str, Any] = {
            "complaint_id": f"{self.prefix}c{self.nc:07d}",
            "ts": self.clock.iso(t),
            "msisdn": m,
        }
        x = r()
        if x < 0.75:  # the subscriber names the signature (and often the port)
            rec["signature"] = f"【{sig}】" if r() < 0.5 else sig
        if x < 0.5 or 0.75 <= x < 0.9:
            rec["port"] = port
        body = text if text is not None else _COMPLAINT_TEXTS[int(r() * len(_COMPLAINT_TEXTS))]
        if body is not None:
            rec["text"] = body
        rec["category"] = "marketing"
        self.counts["complaints"] += 1
        return ("complaint", m, rec)

    # -- per-message violations -------------------------------------------------------------

    def _own(self, e: Enterprise, code: str) -> Route:
        routes = [r for r in e.routes[NTF] + e.routes[MKT] if r.code == code]
        return routes[int(self.rng.random() * len(routes))]

    def _violation(self, t: float, e: Enterprise) -> Record:
        """One mt that breaks the rules named in the expected set, and no other rule."""
        r = self.rng.random
        ents = self.pop.enterprises
        n_subs = len(self.pop.msisdns)
        kind = VIOLATIONS[int(r() * len(VIOLATIONS))]
        self.counts[f"violation:{kind}"] += 1
        ei = e.index
        sub = int(r() * n_subs)
        if kind == "suspended_port":
            owners = [x for x in ents if x.suspended_port]
            if not owners:
                kind = "account_not_on_port"
            else:
                if e.suspended_port is None:
                    e = owners[int(r() * len(owners))]
                assert e.suspended_port is not None
                base = self._own(e, e.ntf_port)
                route = Route(e.suspended_port, e.suspended_port, base.account, base.ip,
                              base.gateway, False)  # fmt: skip
                return self._mt(t, sub, route, NTF, self._notification(e), e.index,
                                (PORT_SUSPENDED,), sig_name=e.name)  # fmt: skip
        if kind == "revoked_signature":
            owners = [x for x in ents if x.revoked_signature]
            if not owners:
                kind = "unregistered_signature"
            else:
                if e.revoked_signature is None:
                    e = owners[int(r() * len(owners))]
                old = e.revoked_signature
                assert old is not None
                route = self._own(e, e.ntf_port)
                if r() < 0.5:
                    text, field_ = self._notification(e, old), None
                else:  # in the signature field, text without 【…】
                    text, field_ = "账户提醒：您的会员权益即将到期", f"【{old}】"
                return self._mt(t, sub, route, NTF, text, e.index, (SIGNATURE_UNREGISTERED,),
                                signature=field_)  # fmt: skip
        if kind == "marketing_after_unsubscribe":
            if not self.revoked_pairs:
                kind = "marketing_without_consent"
            else:
                key = self.revoked_pairs[int(r() * len(self.revoked_pairs))]
                sub, ei = divmod(key, self.n_ent)
                e = ents[ei]
                route = self._own(e, e.mkt_port)
                return self._mt(t, sub, route, MKT, self._marketing(e), ei, (CONSENT_REVOKED,),
                                sig_name=e.name)  # fmt: skip
        if kind == "wrong_category":
            cons = self._consenter(ei) if r() < 0.5 else None
            if cons is not None:  # marketing on the notification port
                route = self._own(e, e.ntf_port)
                return self._mt(t, cons, route, MKT, self._marketing(e), ei, (PORT_CATEGORY,),
                                sig_name=e.name)  # fmt: skip
            route = self._own(e, e.mkt_port)  # a verification code on the commercial port
            return self._mt(t, sub, route, VER, self._verification(e.name), ei, (PORT_CATEGORY,))
        if kind == "marketing_without_consent":
            granted, revoked = self.pop.granted, self.revoked
            for _ in range(50):
                key = sub * self.n_ent + ei
                if key not in granted and key not in revoked:
                    break
                sub = int(r() * n_subs)
            else:
                kind = "missing_signature"
            if kind == "marketing_without_consent":
                route = self._own(e, e.mkt_port)
                return self._mt(t, sub, route, MKT, self._marketing(e), ei, (CONSENT_MISSING,),
                                sig_name=e.name)  # fmt: skip
        route = self._own(e, e.ntf_port)
        if kind == "unregistered_port":
            code = self.pop.unregistered_ports[int(r() * len(self.pop.unregistered_ports))]
            route = Route(code, code, route.account, route.ip, route.gateway, False)
            rules = (PORT_UNREGISTERED, SIGNATURE_SCOPE) if e.sig_ports else (PORT_UNREGISTERED,)
            return self._mt(t, sub, route, NTF, self._notification(e), ei, rules)
        if kind == "account_not_on_port":
            other = ents[(ei + 1 + int(r() * (len(ents) - 1))) % len(ents)]
            acct = other.accounts[0]
            route = Route(route.code, route.port, acct, other.ips[acct][0],
                          other.gateway[acct], False)  # fmt: skip
            return self._mt(t, sub, route, NTF, self._notification(e), ei, (PORT_ACCOUNT,))
        if kind == "missing_signature":
            tpl = _UNSIGNED_NOTIFICATION[int(r() * len(_UNSIGNED_NOTIFICATION))]
            return self._mt(t, sub, route, NTF, self._fill(tpl, ""), ei, (SIGNATURE_MISSING,))
        if kind == "unregistered_signature":
            fake = _UNREGISTERED_SIGNATURES[int(r() * len(_UNREGISTERED_SIGNATURES))]
            text = self._notification(e, fake)
            return self._mt(t, sub, route, NTF, text, ei, (SIGNATURE_UNREGISTERED,))
        # foreign_signature: another enterprise's signature on this enterprise's port
        other = ents[(ei + 1 + int(r() * (len(ents) - 1))) % len(ents)]
        text = self._notification(other)
        return self._mt(t, sub, route, NTF, text, other.index, (SIGNATURE_SCOPE,))

    # -- incidents -------------------------------------------------------------------------

    def _inc_bombing(self, inc: Incident) -> _Steps:
        p = inc.params
        rnd = self.rng.random
        senders: list[tuple[int, Route]] = p["senders"]
        n: int = p["n"]
        times = sorted(inc.start + rnd() * (inc.end - inc.start) for _ in range(n))
        # Every sender at least once, the rest by (heavy-tailed) weight.
        assign = list(range(len(senders)))
        assign += self.rng.choices(range(len(senders)), weights=p["weights"], k=n - len(assign))
        self.rng.shuffle(assign)
        for ti, si in zip(times, assign[:n], strict=False):
            yield ti, self._bomb_mt, (p["target"], senders[si])

    def _bomb_mt(self, t: float, target: int, sender: tuple[int, Route]) -> Record:
        ei, route = sender
        e = self.pop.enterprises[ei]
        return self._mt(t, target, route, VER, self._verification(e.name), ei, ())

    def _inc_sublet(self, inc: Incident) -> _Steps:
        rate = self.cfg.sublet_per_minute / 60.0
        t = inc.start
        while rate > 0:
            t += self.rng.expovariate(rate)
            if t >= inc.end:
                break
            yield t, self._sublet_mt, (inc.params,)

    def _sublet_mt(self, t: float, p: dict[str, Any]) -> Record:
        r = self.rng.random
        o = self.pop.enterprises[p["foreign"][int(r() * len(p["foreign"]))]]
        acct, ip = p["accounts"][int(r() * len(p["accounts"]))]
        route = Route(p["port"], p["port"], acct, ip, p["gateway"], False)
        sub = int(r() * len(self.pop.msisdns))
        if r() < 0.7:
            c, text = NTF, self._notification(o)
        else:
            c, text = VER, self._verification(o.name)
        self.counts["sublet"] += 1
        return self._mt(t, sub, route, c, text, o.index, (PORT_ACCOUNT, SIGNATURE_SCOPE))

    def _inc_spike(self, inc: Incident) -> _Steps:
        p = inc.params
        n = max(1, round(p["per_minute"] * (inc.end - inc.start) / 60.0))
        rnd = self.rng.random
        times = sorted(inc.start + rnd() * (inc.end - inc.start) for _ in range(n))
        n_subs = len(self.pop.msisdns)
        subs = self.rng.sample(range(n_subs), min(n, n_subs))  # distinct recipients
        e = self.pop.enterprises[p["enterprise"]]
        routes = [
            r
            for r in e.routes[NTF] + e.routes[VER]
            if r.code == e.ntf_port and r.account == p["account"]
        ]
        for k, ti in enumerate(times):
            yield ti, self._spike_mt, (e.index, routes, subs[k % len(subs)])

    def _spike_mt(self, t: float, ei: int, routes: list[Route], sub: int) -> Record:
        e = self.pop.enterprises[ei]
        route = routes[int(self.rng.random() * len(routes))]
        self.counts["spike"] += 1
        if self.rng.random() < 0.7:
            return self._mt(t, sub, route, VER, self._verification(e.name), ei, ())
        return self._mt(t, sub, route, NTF, self._notification(e), ei, ())

    def _inc_complaints(self, inc: Incident) -> _Steps:
        p = inc.params
        rnd = self.rng.random
        times = sorted(inc.start + rnd() * (inc.end - inc.start) for _ in range(p["n"]))
        for ti in times:
            yield ti, self._wave_complaint, (p["enterprise"],)

    def _wave_complaint(self, t: float, ei: int) -> Record | None:
        lst, _ = self.track[ei]
        used = self.complained.setdefault(ei, set())
        r = self.rng.random
        for _ in range(64):
            if not lst:
                break
            sub, port = lst[int(r() * len(lst))]
            if sub not in used:
                used.add(sub)
                self.counts["complaint_wave"] += 1
                e = self.pop.enterprises[ei]
                text = _COMPLAINT_TEXTS[int(r() * 4)]
                return self._complaint(t, sub, port, e.name, text=text)
        self.counts["complaint_wave_skipped"] += 1
        return None


# ---------------------------------------------------------------------------------------------
# outputs


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def write_truth(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ground-truth rows as JSON lines; returns how many."""
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(_dumps(row) + "\n")
            n += 1
    return n


def write_expected(path: Path, pairs: Iterable[tuple[str, str]]) -> int:
    """Write the expected per-message (event_id, rule) pairs as JSON lines; returns how many."""
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for event_id, rule in pairs:
            f.write(_dumps({"event_id": event_id, "rule": rule}) + "\n")
            n += 1
    return n


def write_files(sim: Simulation, out: Path) -> SimRun:
    """Write a whole run to `out`: events.jsonl.gz, complaints.jsonl, ports.jsonl,
    signatures.jsonl, consent.jsonl, truth.jsonl and expected.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (
        ("ports", sim.reference.ports),
        ("signatures", sim.reference.signatures),
        ("consent", sim.reference.consent),
    ):
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for _, value in rows:
                if value is not None:
                    f.write(_dumps(value) + "\n")
    run = sim.run()
    with (
        gzip.open(out / "events.jsonl.gz", "wt", encoding="utf-8", compresslevel=3) as ev_f,
        (out / "complaints.jsonl").open("w", encoding="utf-8") as c_f,
    ):
        for kind, _, value in run.records:
            (ev_f if kind == "event" else c_f).write(_dumps(value) + "\n")
    write_truth(out / "truth.jsonl", sim.truth)
    write_expected(out / "expected.jsonl", run.expected)
    return run


class Sink(Protocol):
    """Where paced records go (the Kafka writer; a list in tests)."""

    def send(self, kind: str, key: str, value: dict[str, Any]) -> None: ...


class KafkaSink:
    """kafka-python producer keyed as the wire contract says (imported lazily)."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        from smsmon.admin import kafka_client_config

        self.settings = settings
        self.topics = {"event": settings.topic_events, "complaint": settings.topic_complaints}
        self.producer: Any = KafkaProducer(
            linger_ms=20, acks="all", batch_size=64 * 1024, **kafka_client_config(settings)
        )

    def reference(self, ref: Reference) -> int:
        """Publish ports, signatures, then consent; flush; return how many records."""
        n = 0
        s = self.settings
        for topic, rows in (
            (s.topic_ports, ref.ports),
            (s.topic_signatures, ref.signatures),
            (s.topic_consent, ref.consent),
        ):
            for key, value in rows:
                payload = None if value is None else _dumps(value).encode()
                self.producer.send(topic, key=key.encode(), value=payload)
                n += 1
        self.producer.flush()
        return n

    def send(self, kind: str, key: str, value: dict[str, Any]) -> None:
        """Send one event (key: canonical msisdn) or complaint (key: msisdn)."""
        self.producer.send(self.topics[kind], key=key.encode(), value=_dumps(value).encode())

    def close(self) -> None:
        """Flush everything sent and close the producer."""
        self.producer.flush()
        self.producer.close(timeout=10)


@dataclass(frozen=True, slots=True)
class PumpResult:
    """How a paced run ended: records sent, offset of the last one sent, whether all were."""

    sent: int
    last_offset: float | None
    finished: bool


def pump(
    run: SimRun,
    sink: Sink,
    *,
    speed: float = 0.0,
    rate: float = 0.0,
    seconds: float = 0.0,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PumpResult:
    """Send `run`'s records to `sink` at a pace.

    `speed`: simulated seconds per wall second; else `rate`: records per wall second; else as
    fast as possible. `seconds` > 0 limits the wall time; setting `stop` (a signal handler
    does) ends the run early. A record drawn but not sent is taken out of `run.expected`.
    """
    stop = stop or threading.Event()
    t0 = clock()
    deadline = t0 + seconds if seconds > 0 else math.inf
    sent = 0
    last: float | None = None
    for kind, key, value in run.records:
        due = t0 + run.t / speed if speed > 0 else (t0 + sent / rate if rate > 0 else t0)
        while True:
            now = clock()
            if stop.is_set() or now >= deadline:
                event_id = value.get("event_id")
                while run.expected and run.expected[-1][0] == event_id:
                    run.expected.pop()
                return PumpResult(sent, last, False)
            if due - now <= 0.001:
                break
            sleep(min(due - now, deadline - now, 0.2))
        sink.send(kind, key, value)
        sent += 1
        last = run.t
    return PumpResult(sent, last, True)


def kafka_span(
    now: dt.datetime,
    tz: ZoneInfo,
    scenarios: Iterable[str],
    duration: float | None,
    *,
    max_future_skew: float = 86_400.0,
    lead: float = 300.0,
    margin: float = 3600.0,
) -> tuple[dt.datetime, float]:
    """Default (start, duration) of a Kafka run so that no ts exceeds `now + max_future_skew`.

    Start `lead` seconds before now (with double11: at the latest 18:30 local before that, so
    the evening ramp comes early); duration defaults to the skew minus `margin`; a longer
    duration moves the start back so the span still ends by now + skew - margin.
    """
    limit = max_future_skew - margin
    if duration is None:
        duration = limit
    start = now - dt.timedelta(seconds=lead)
    if "double11" in scenarios:
        local = start.astimezone(tz)
        evening = local.replace(hour=18, minute=30, second=0, microsecond=0)
        if evening > local:
            evening -= dt.timedelta(days=1)
        start = evening
    latest_end = now + dt.timedelta(seconds=limit)
    if start + dt.timedelta(seconds=duration) > latest_end:
        start = latest_end - dt.timedelta(seconds=duration)
    return start, duration


# ---------------------------------------------------------------------------------------------
# command line


def _scenarios(values: list[str] | None) -> frozenset[str]:
    names = {n.strip() for v in values or ["normal"] for n in v.split(",") if n.strip()}
    return frozenset(names)


def _parse_start(text: str, tz: ZoneInfo) -> dt.datetime:
    ts = dt.datetime.fromisoformat(text)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=tz)


def _summary(sim: Simulation, run: SimRun, sent: int | None = None) -> str:
    c = run.counts
    mt = c["marketing"] + c["notification"] + c["verification"]
    parts = [
        f"{sent if sent is not None else mt + c['mo'] + c['dlr'] + c['complaints']:,} records",
        f"mt {mt:,} (marketing {c['marketing']:,}, notification {c['notification']:,}, "
        f"verification {c['verification']:,})",
        f"mo {c['mo']:,} (unsubscribe {c['unsubscribes']:,})",
        f"dlr {c['dlr']:,}",
        f"complaints {c['complaints']:,}",
        f"violations {c['violations']:,}",
        f"truth rows {len(sim.truth)}",
    ]
    return "; ".join(parts)


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Simulate gateway traffic with scenarios and ground truth, to Kafka or to files."""
    tz = settings.tz
    try:
        scenarios = _scenarios(args.scenario)
        start = _parse_start(args.start, tz) if args.start else None
    except ValueError as exc:
        print(f"smsmon simulate: {exc}", file=sys.stderr)
        return 2
    duration = args.duration
    if args.out is None:
        now = dt.datetime.now(dt.UTC)
        skew = float(settings.max_future_skew_seconds)
        if duration is None and args.speed and args.seconds:
            duration = min(args.speed * args.seconds, skew - 3600.0)
        if start is None:
            start, duration = kafka_span(now, tz, scenarios, duration, max_future_skew=skew)
        elif duration is None:
            duration = 86_400.0
        if start + dt.timedelta(seconds=duration) > now + dt.timedelta(seconds=skew):
            print(
                f"smsmon simulate: the span {start.isoformat()} + {duration:.0f}s ends more "
                f"than SMSMON_MAX_FUTURE_SKEW_SECONDS={skew:.0f}s after now, so the worker "
                "would dead-letter its last events; start earlier or shorten --duration",
                file=sys.stderr,
            )
            return 2
    secret = None
    if settings.msisdn_secret is not None and settings.msisdn_secret.get_secret_value():
        secret = settings.msisdn_secret.get_secret_value().encode()
    else:
        log.warning("SMSMON_MSISDN_SECRET is not set: truth rows carry no msisdn_hash")
    try:
        cfg = SimConfig(
            seed=args.seed,
            start=start,
            duration=duration if duration is not None else 86_400.0,
            base_rate=args.base_rate,
            scenarios=scenarios,
            violation_rate=args.violation_rate,
            enterprises=args.enterprises,
            subscribers=args.subscribers,
            consent_fraction=args.consent_fraction,
            timezone=settings.timezone,
            incidents=args.incidents,
            msisdn_secret=secret,
            msisdn_key_id=settings.msisdn_key_id,
            recent_capacity=settings.recent_ports_per_msisdn,
        )
        sim = generate(cfg)
    except ValueError as exc:
        print(f"smsmon simulate: {exc}", file=sys.stderr)
        return 2
    log.info(
        "simulating %s to %s (%.0fs), scenarios %s, seed %d",
        sim.start.isoformat(),
        sim.end.isoformat(),
        cfg.duration,
        ",".join(sorted(scenarios)),
        cfg.seed,
    )
    if args.out is not None:
        run = write_files(sim, Path(args.out))
        if args.truth:
            write_truth(Path(args.truth), sim.truth)
        print(f"wrote {args.out}: {_summary(sim, run)}")
        return 0
    return _simulate_to_kafka(settings, sim, args)


def _simulate_to_kafka(settings: Settings, sim: Simulation, args: argparse.Namespace) -> int:
    try:
        if not args.no_topics:
            _ensure_topics(settings)
        sink = KafkaSink(settings)
    except Exception as exc:  # kafka-python raises many types; say which broker failed
        print(
            f"smsmon simulate: cannot use Kafka at {settings.kafka_bootstrap}: {exc!r} "
            "(set SMSMON_KAFKA_BOOTSTRAP, or write files with --out)",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("signal %d: flushing and stopping", signum)
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    run = sim.run()
    result = PumpResult(0, None, False)
    try:
        if args.phase in ("all", "reference"):
            n_ref = sink.reference(sim.reference)
            log.info("published %d reference records", n_ref)
        if args.phase == "reference":
            result = PumpResult(0, None, True)
            return 0
        result = pump(
            run,
            sink,
            speed=args.speed or 0.0,
            rate=args.rate or 0.0,
            seconds=args.seconds,
            stop=stop,
        )
    finally:
        sink.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        # Only what was sent: incidents begun by the last record, their ends clipped to it.
        offset = None if result.finished else result.last_offset
        offset = -1.0 if offset is None and not result.finished else offset
        if args.truth:
            write_truth(Path(args.truth), sim.truth_until(offset))
        if args.expected:
            write_expected(Path(args.expected), run.expected)
    print(f"sent {_summary(sim, run, result.sent)}")
    return 0


def _ensure_topics(settings: Settings) -> None:
    """Create smsmon's topics if missing (and the complaints topic, keyed by msisdn)."""
    import contextlib

    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from smsmon.admin import ensure_topics, kafka_client_config, topic_specs

    ensure_topics(settings)
    if settings.topic_complaints in {s.name for s in topic_specs(settings)}:
        return
    admin = KafkaAdminClient(
        client_id=f"{settings.app_id}-simulate", **kafka_client_config(settings)
    )
    try:
        if settings.topic_complaints not in set(admin.list_topics()):
            topic = NewTopic(
                name=settings.topic_complaints,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
            )
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic], raise_errors=False)
    finally:
        admin.close()


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `smsmon simulate` to the command line."""
    p = sub.add_parser(
        "simulate",
        help=cmd_simulate.__doc__,
        description="Simulate SMS gateway traffic (reference data, events, complaints) with "
        "scenarios and a ground-truth file. Writes to Kafka (default) or, with --out, to files. "
        "See docs/simulator.md.",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help=f"one of {', '.join(SCENARIOS)}; repeat or comma-separate to combine "
        "(default: normal)",
    )
    p.add_argument(
        "--start",
        help="simulated start, ISO-8601 (naive = SMSMON_TIMEZONE); default: Kafka runs start a "
        "few minutes before now (double11: at the latest 18:30), files today 00:00",
    )
    p.add_argument(
        "--duration",
        type=float,
        help="simulated seconds (default: files 86400; Kafka 82800, or speed x seconds)",
    )
    p.add_argument("--base-rate", type=float, default=20.0, help="mean events per simulated second")
    p.add_argument("--violation-rate", type=float, default=0.01)
    p.add_argument("--incidents", type=int, default=1, help="incidents per anomaly scenario")
    p.add_argument("--enterprises", type=int, default=30)
    p.add_argument("--subscribers", type=int, default=50_000)
    p.add_argument("--consent-fraction", type=float, default=0.6)
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, help="simulated seconds per wall second")
    pace.add_argument(
        "--rate", type=float, help="records per wall second (0 = as fast as possible, default)"
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=0.0,
        help="stop after this many wall seconds (0 = no limit)",
    )
    p.add_argument("--out", help="write files to this directory instead of Kafka")
    p.add_argument("--truth", help="write the ground truth (JSON lines) to this file")
    p.add_argument("--expected", help="write the expected per-message (event_id, rule) pairs")
    p.add_argument(
        "--no-topics", action="store_true", help="don't create missing topics before producing"
    )
    p.add_argument(
        "--phase",
        choices=("all", "reference", "traffic"),
        default="all",
        help="Kafka runs: publish reference data and traffic (all), only the reference data, "
        "or only the traffic (load reference first and let the worker read it, as in a first "
        "deployment)",
    )
    p.set_defaults(func=cmd_simulate)
