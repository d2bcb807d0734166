"""The static world of a simulation: enterprises, platforms, ports, signatures, subscribers,
consent, and the reference records the worker loads from them."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from smsmon.tools.simulator.config import SimConfig
from smsmon.tools.simulator.kinds import CATEGORIES, MKT
from smsmon.tools.simulator.names import (
    GATEWAYS,
    IP_BLOCKS,
    MSISDN_PREFIXES,
    NAME_PREFIXES,
    PLATFORM_NAMES,
    REGIONS,
    SECTORS,
    USCC_CHARS,
    USCC_WEIGHTS,
    Sector,
)
from smsmon.tools.simulator.rates import RateModel, profile


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
    # pairs whose grant was a registration default or implied (not in `granted`)
    implicit: set[int]
    implicit_consenters: list[list[int]]  # by enterprise, like `consenters`
    revoked: set[int]  # pair keys revoked before the start
    unregistered_ports: list[str]
    route_share: dict[str, list[tuple[int, int, float]]]  # code -> (enterprise, category, share)

    def pair(self, subscriber: int, enterprise: int) -> int:
        """Compact key of a (subscriber, enterprise) pair."""
        return subscriber * len(self.enterprises) + enterprise


def _check_character(body: str) -> str:
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(body, USCC_WEIGHTS, strict=True))
    return USCC_CHARS[(31 - total % 31) % 31]


def uscc_valid(code: str) -> bool:
    """True if `code` is 18 characters with a correct GB 32100 check character."""
    if len(code) != 18 or any(c not in USCC_CHARS for c in code):
        return False
    return code[17] == _check_character(code[:17])


def _nice_ceiling(x: float) -> int:
    """Round up to 1, 2, 2.5 or 5 times a power of ten (quotas look like quotas)."""
    if x <= 1:
        return 1
    mag = 10.0 ** math.floor(math.log10(x))
    step = next(s for s in (1.0, 2.0, 2.5, 5.0, 10.0) if s * mag >= x)
    return math.ceil(step * mag)


def build_population(cfg: SimConfig, start: dt.datetime) -> Population:
    """The population of `cfg`'s seed (consent given before `start`), quotas included."""
    return _Builder(cfg, start).build()


class _Builder:
    """Draws the population from the seed's `population` stream, one part after the other.

    The order of the parts is the order of the draws: reordering them changes every
    simulation of every seed.
    """

    def __init__(self, cfg: SimConfig, start: dt.datetime) -> None:
        self.cfg = cfg
        self.start = start
        self.rng = cfg.rng("population")
        self.ids: set[str] = set()
        self.codes: set[str] = set()

    def build(self) -> Population:
        enterprises = self._enterprises()
        platforms = self._platforms(enterprises)
        self._suspensions_and_signatures(enterprises, platforms)
        unregistered = [self._new_code("1066", 4) for _ in range(16)]
        route_share = self._routes(enterprises, platforms)
        msisdns = self._msisdns()
        pop = Population(
            enterprises=enterprises,
            platforms=platforms,
            msisdns=msisdns,
            ports=_port_records(enterprises, platforms),
            signatures={},
            consent_records=[],
            consenters=[[] for _ in enterprises],
            granted=set(),
            implicit=set(),
            implicit_consenters=[[] for _ in enterprises],
            revoked=set(),
            unregistered_ports=unregistered,
            route_share=route_share,
        )
        self._consent(pop)
        _set_quotas(pop, self.cfg)
        pop.signatures = _signature_records(enterprises)
        return pop

    # -- identifiers ---------------------------------------------------------------------------

    def _new_code(self, prefix: str, digits: int) -> str:
        rng = self.rng
        while True:
            code = prefix + "".join(str(rng.randrange(10)) for _ in range(digits))
            if code not in self.codes:
                self.codes.add(code)
                return code

    def _ips(self, n: int) -> list[str]:
        rng = self.rng
        return [f"{rng.choice(IP_BLOCKS)}.{rng.randrange(1, 255)}" for _ in range(n)]

    def _uscc(self) -> str:
        """A fresh unified social credit code (统一社会信用代码), valid per GB 32100."""
        rng = self.rng
        while True:
            org = "".join(rng.choice(USCC_CHARS[:10] + "ABCDEFGHJKLMNPQRTUWXY") for _ in range(9))
            body = "91" + rng.choice(REGIONS) + org
            code = body + _check_character(body)
            if code not in self.ids:
                self.ids.add(code)
                return code

    # -- senders -------------------------------------------------------------------------------

    def _enterprises(self) -> list[Enterprise]:
        rng = self.rng
        names = [(p, s, sec) for sec in SECTORS for p in NAME_PREFIXES for s in sec.suffixes]
        rng.shuffle(names)
        # Pick sectors by weight, then the first unused name of that sector.
        by_sector: dict[str, list[tuple[str, str, Sector]]] = {}
        for n in names:
            by_sector.setdefault(n[2].key, []).append(n)
        used_prefix_sector: set[tuple[str, str]] = set()
        enterprises: list[Enterprise] = []
        sector_weights = [s.weight for s in SECTORS]
        for i in range(self.cfg.enterprises):
            while True:
                sec = rng.choices(SECTORS, weights=sector_weights)[0]
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
                    uscc=self._uscc(),
                    name=prefix + suffix,
                    sector=sec.key,
                    weight=1.0 / (i + 1) ** 0.8,  # a few big senders, a long tail
                    mix=sec.mix,
                    accounts=accounts,
                    ips={a: self._ips(rng.choice((1, 1, 2))) for a in accounts},
                    gateway={a: rng.choice(GATEWAYS) for a in accounts},
                    mkt_port=self._new_code("1066", 4),
                    ntf_port=self._new_code("1069" + str(rng.randrange(1, 10)), 3),
                )
            )
        total_w = sum(e.weight for e in enterprises)
        for e in enterprises:
            e.weight /= total_w
        return enterprises

    def _platforms(self, enterprises: list[Enterprise]) -> list[Platform]:
        rng = self.rng
        platforms: list[Platform] = []
        for k in range(self.cfg.platforms):
            accounts = [f"plat{k}{'ab'[j]}" for j in range(2)]
            platforms.append(
                Platform(
                    uscc=self._uscc(),
                    name=PLATFORM_NAMES[k],
                    port=self._new_code("10690", 3),
                    accounts=accounts,
                    ips={a: self._ips(2) for a in accounts},
                    gateway=rng.choice(GATEWAYS),
                )
            )
        # Roughly a third of the enterprises also send through a platform.
        if platforms:
            for e in enterprises:
                if rng.random() < 0.35:
                    e.platform = rng.randrange(len(platforms))
                    platforms[e.platform].carried.append(e.index)
        return platforms

    def _suspensions_and_signatures(
        self, enterprises: list[Enterprise], platforms: list[Platform]
    ) -> None:
        """A few suspended ports, a few revoked old signatures, and the ports each
        signature is registered for."""
        rng = self.rng
        for e in rng.sample(enterprises, min(self.cfg.suspended_ports, len(enterprises))):
            e.suspended_port = self._new_code("1066", 4)
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

    def _routes(
        self, enterprises: list[Enterprise], platforms: list[Platform]
    ) -> dict[str, list[tuple[int, int, float]]]:
        """Fill each enterprise's route slots; return each port's (enterprise, category,
        share) of traffic."""
        route_share: dict[str, list[tuple[int, int, float]]] = {}
        for e in enterprises:
            plat = _platform_routes(platforms[e.platform]) if e.platform is not None else []
            exts = [str(self.rng.randrange(10, 10_000)) for _ in range(3)]
            mkt, ntf = _own_routes(e, e.mkt_port, exts), _own_routes(e, e.ntf_port, exts)
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
                    route_share.setdefault(routes[0].code, []).append((e.index, c, share))
                e.routes.append(slots)
        return route_share

    # -- subscribers ---------------------------------------------------------------------------

    def _msisdns(self) -> list[str]:
        rng = self.rng
        seen: set[str] = set()
        msisdns: list[str] = []
        while len(msisdns) < self.cfg.subscribers:
            m = rng.choice(MSISDN_PREFIXES) + f"{rng.randrange(10**8):08d}"
            if m not in seen:
                seen.add(m)
                msisdns.append(m)
        return msisdns

    def _consent(self, pop: Population) -> None:
        """Consent of a share of the subscribers to one to five enterprises (marketing
        senders more likely), some of it revoked before the start."""
        rng, cfg = self.rng, self.cfg
        enterprises = pop.enterprises
        n_ent = len(enterprises)
        mkt_cum = list(itertools.accumulate(e.weight * (e.mix[MKT] + 0.05) for e in enterprises))
        sources = ("app", "web", "store", "sms")
        # a stream of its own, so the other draws of the population stay as they were
        method_rng = cfg.rng("consent-method")
        for i, m in enumerate(pop.msisdns):
            if rng.random() >= cfg.consent_fraction:
                continue
            k = min(1 + int(rng.expovariate(0.7)), 5, n_ent)
            chosen: set[int] = set()
            while len(chosen) < k:
                x = rng.random() * mkt_cum[-1]
                chosen.add(min(bisect.bisect_right(mkt_cum, x), n_ent - 1))
            for ei in sorted(chosen):
                e = enterprises[ei]
                at = self.start - dt.timedelta(days=rng.uniform(1, 400))
                is_revoked = rng.random() < cfg.revoked_fraction
                record: dict[str, Any] = {
                    "msisdn": m,
                    "enterprise": e.uscc,
                    "status": "revoked" if is_revoked else "granted",
                    "ts": at.isoformat(timespec="seconds"),
                    "source": rng.choice(sources),
                }
                is_implicit = not is_revoked and method_rng.random() < cfg.implicit_fraction
                if is_implicit:
                    record["method"] = method_rng.choice(("registration_default", "implied"))
                    record["proof_ref"] = f"reg-{i}-{ei}"
                pop.consent_records.append((f"{m}|{e.uscc}", record))
                key = i * n_ent + ei
                if is_revoked:
                    pop.revoked.add(key)
                elif is_implicit:
                    pop.implicit.add(key)
                    pop.implicit_consenters[ei].append(i)
                else:
                    pop.granted.add(key)
                    pop.consenters[ei].append(i)


def _own_routes(e: Enterprise, code: str, exts: list[str]) -> list[Route]:
    """Slots of one of `e`'s own ports: every account and IP, 4 of 7 without an extension
    (扩展码) and one slot for each of the enterprise's extensions."""
    out: list[Route] = []
    for a in e.accounts:
        for ip in e.ips[a]:
            out.extend([Route(code, code, a, ip, e.gateway[a], False)] * 4)
            out.extend(Route(code, code + x, a, ip, e.gateway[a], False) for x in exts)
    return out


def _platform_routes(p: Platform) -> list[Route]:
    return [Route(p.port, p.port, a, ip, p.gateway, True) for a in p.accounts for ip in p.ips[a]]


_COMMERCIAL = ("marketing", "notification")
_NOTIFYING = ("notification", "verification")


def _port_record(
    code: str,
    owner: str,
    accounts: list[str],
    categories: tuple[str, ...],
    status: str,
    *,
    shared: bool,
) -> dict[str, Any]:
    return {
        "port": code,
        "enterprise": owner,
        "accounts": list(accounts),
        "categories": list(categories),
        "status": status,
        "shared": shared,
    }


def _port_records(
    enterprises: list[Enterprise], platforms: list[Platform]
) -> dict[str, dict[str, Any]]:
    """1066 ports carry marketing and notifications, 1069 ports notifications and codes,
    10690 platform ports everything."""
    ports: dict[str, dict[str, Any]] = {}
    for e in enterprises:
        own = [(e.mkt_port, _COMMERCIAL, "active"), (e.ntf_port, _NOTIFYING, "active")]
        if e.suspended_port:
            own.append((e.suspended_port, _COMMERCIAL, "suspended"))
        for code, categories, status in own:
            ports[code] = _port_record(code, e.uscc, e.accounts, categories, status, shared=False)
    for p in platforms:
        ports[p.port] = _port_record(p.port, p.uscc, p.accounts, CATEGORIES, "active", shared=True)
    return ports


def _signature_records(enterprises: list[Enterprise]) -> dict[str, dict[str, Any]]:
    signatures: dict[str, dict[str, Any]] = {}
    for e in enterprises:
        signatures[e.name] = {
            "signature": e.name,
            "enterprise": e.uscc,
            "ports": list(e.sig_ports),
            "status": "active",
        }
        if e.revoked_signature:
            signatures[e.revoked_signature] = {
                "signature": e.revoked_signature,
                "enterprise": e.uscc,
                "ports": [],
                "status": "revoked",
            }
    return signatures


def _set_quotas(pop: Population, cfg: SimConfig) -> None:
    """`max_per_minute` on the notification port of every other enterprise and on every
    platform port.

    Sized at 3x the port's busiest expected minute (with marketing at the Double 11 peak on the
    platform ports, which carry marketing), so that ordinary traffic, the Double 11 evening
    included, stays under it: only the `spike` scenario breaks a quota.
    """
    model = RateModel(pop.enterprises, cfg)
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
