"""Synthetic SMS gateway traffic with ground truth: `smsmon simulate` and `generate()`.

A seeded population (enterprises with 1066 commercial and 1069 notification ports, shared 10690
platform ports, signatures, accounts, subscribers with consent) sends traffic that follows a
daily rhythm; scenarios inject aggregate anomalies (bombing, sublet, spike, complaint wave) and
the Double 11 evening ramp; a sprinkle of per-message violations rides on top. Every injected
anomaly becomes a ground-truth row, every injected per-message violation an expected
(event_id, rule) pair. Generation is pure and streaming (no Kafka import at module level); the
Kafka writer imports kafka-python lazily. See docs/simulator.md.

The rooms, in the order the data flows: `config` (what to simulate), `population` (the static
world, from `names`), `rates` (how much, when), `incidents` (the injected anomalies: plan,
ground truth, playing them), `simulation` (`generate`), `run` (one pass: `background` traffic,
`violations`, the `schedule` of later records, built by `records` with `texts`, remembering the
`audience`), `sinks` (files, Kafka) and `cli`.
"""

from __future__ import annotations

from smsmon.tools.simulator.cli import cmd_simulate, register_cli
from smsmon.tools.simulator.config import SCENARIOS, SimConfig
from smsmon.tools.simulator.incidents import Incident
from smsmon.tools.simulator.kinds import (
    CATEGORIES,
    CONSENT_IMPLICIT,
    CONSENT_MISSING,
    CONSENT_REVOKED,
    MKT,
    NTF,
    PORT_ACCOUNT,
    PORT_CATEGORY,
    PORT_SUSPENDED,
    PORT_UNREGISTERED,
    RULE_COMPLAINTS,
    RULE_FLOOD,
    RULE_SPIKE,
    RULE_SUBLET,
    SIGNATURE_MISSING,
    SIGNATURE_SCOPE,
    SIGNATURE_UNREGISTERED,
    VER,
    Record,
)
from smsmon.tools.simulator.population import Enterprise, Platform, Population, Route, uscc_valid
from smsmon.tools.simulator.rates import PROFILES, profile
from smsmon.tools.simulator.run import SimRun
from smsmon.tools.simulator.simulation import Simulation, generate
from smsmon.tools.simulator.sinks import (
    KafkaSink,
    PumpResult,
    Sink,
    kafka_span,
    pump,
    write_expected,
    write_files,
    write_truth,
)
from smsmon.tools.simulator.violations import VIOLATIONS

__all__ = [
    "CATEGORIES",
    "CONSENT_IMPLICIT",
    "CONSENT_MISSING",
    "CONSENT_REVOKED",
    "MKT",
    "NTF",
    "PORT_ACCOUNT",
    "PORT_CATEGORY",
    "PORT_SUSPENDED",
    "PORT_UNREGISTERED",
    "PROFILES",
    "RULE_COMPLAINTS",
    "RULE_FLOOD",
    "RULE_SPIKE",
    "RULE_SUBLET",
    "SCENARIOS",
    "SIGNATURE_MISSING",
    "SIGNATURE_SCOPE",
    "SIGNATURE_UNREGISTERED",
    "VER",
    "VIOLATIONS",
    "Enterprise",
    "Incident",
    "KafkaSink",
    "Platform",
    "Population",
    "PumpResult",
    "Record",
    "Route",
    "SimConfig",
    "SimRun",
    "Simulation",
    "Sink",
    "cmd_simulate",
    "generate",
    "kafka_span",
    "profile",
    "pump",
    "register_cli",
    "uscc_valid",
    "write_expected",
    "write_files",
    "write_truth",
]
