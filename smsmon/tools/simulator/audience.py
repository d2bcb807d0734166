"""What a run remembers of its subscribers: who sent them what lately, whose consent they
have revoked, and who got a watched enterprise's marketing."""

from __future__ import annotations

import random
from collections.abc import Iterable

from smsmon.tools.simulator.config import SimConfig
from smsmon.tools.simulator.population import Population, Route


class Audience:
    """Subscriber state of one run, mirroring what the worker derives from the same traffic."""

    def __init__(
        self, pop: Population, cfg: SimConfig, rng: random.Random, watched: Iterable[int]
    ) -> None:
        self.pop = pop
        self.rng = rng
        self.capacity = cfg.recent_capacity
        self.n_ent = len(pop.enterprises)
        self.revoked = set(pop.revoked)  # pair keys, including this run's unsubscribes
        self.revoked_pairs = sorted(pop.revoked)  # the same, in a list to draw from
        self.recent: dict[int, dict[str, int]] = {}  # subscriber -> {port code: enterprise}
        index = {e.uscc: e.index for e in pop.enterprises}
        self.port_owner = {
            code: (-1 if rec["shared"] else index[rec["enterprise"]])
            for code, rec in pop.ports.items()
        }
        # Complaint waves need complainants who received the enterprise's marketing on its
        # own port: (in order received, as a set) for each watched enterprise.
        self.marketed: dict[int, tuple[list[tuple[int, str]], set[int]]] = {
            ei: ([], set()) for ei in watched
        }

    def consenter(self, ei: int) -> int | None:
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

    def sent(self, sub: int, route: Route, ent: int) -> None:
        """`ent` sent `sub` an mt over `route`: the latest sender on that port, as the
        worker's bounded recent-ports list keeps it."""
        recent = self.recent.get(sub)
        if recent is None:
            self.recent[sub] = {route.code: ent}
        else:
            recent.pop(route.code, None)
            recent[route.code] = ent
            if len(recent) > self.capacity:
                del recent[next(iter(recent))]

    def marketing_sent(self, sub: int, route: Route, ent: int) -> None:
        """`ent` sent `sub` marketing over `route`; remembered if `ent` is watched and the
        port is its own commercial one."""
        tracked = self.marketed.get(ent)
        if tracked is not None and route.code == self.pop.enterprises[ent].mkt_port:
            lst, seen = tracked
            if sub not in seen and len(lst) < 50_000:
                seen.add(sub)
                lst.append((sub, route.port))

    def unsubscribe(self, sub: int, route: Route) -> None:
        """`sub` replied 退订 over `route`: revoke the consent the contract attributes it to,
        the enterprise of the latest mt from this port to this subscriber, else the port's
        enterprise if the port is not shared."""
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
