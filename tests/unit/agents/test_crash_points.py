"""Crash points of the processing protocol (issue 16, docs/reliability.md "The processing
protocol"): a worker killed at any step of a batch, restarted over the same RocksDB
directories, publishes the same alerts, revocations and stage-1 counts, and ends with the same
consent table, as a run without a crash.

The real `Pipeline.process_batch` and `Pipeline._commit` run batch by batch against an
in-memory broker with transactions and real RocksDB tables (tests/unit/agents/crashkit.py).
Each explicit test also runs its input under a deliberately broken protocol (`Broken`) and
checks that the crash then changes the outcome, so these tests can fail.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from tests.unit.agents import crashkit as ck
from tests.unit.agents.crashkit import Broken, Inputs, Plan

pytestmark = pytest.mark.unit

S = ck.settings_for(Path("/nonexistent"))


def ids(outcome: ck.Outcome) -> set[tuple[str, str]]:
    return {(a["rule"], a["event_id"]) for a in outcome.distinct_alerts().values()}


def one_mt() -> Inputs:
    """A marketing mt without consent: one consent.missing alert."""
    inp = Inputs(S)
    inp.mt(0, 0)
    return inp


def revoke_then_send() -> Inputs:
    """A grant and an mt through the shared port (batch 0), a TD on the shared port that
    only the recent sender attributes (batch 1), marketing after it (batch 2): the alert
    needs batch 0's consent and subscriber state."""
    inp = Inputs(S)
    inp.grant(0, 0)
    inp.mt(0, 0, "shared")
    inp.td(0, 0, "shared")
    inp.mt(0, 0, "mkt")
    return inp


def long_batch() -> Inputs:
    """17 mts to one subscriber in one batch: more than the 16-id dedup window holds."""
    inp = Inputs(S)
    inp.grant(1, 0)
    inp.flood(1, 0, 17)
    return inp


# (crash plan, input, batch sizes, the broken protocol under which this crash matters)
EXPLICIT = {
    "processed": (Plan("processed"), one_mt, [1], Broken(early_state=True)),
    "send": (Plan("send", k=1), one_mt, [1], Broken(early_state=True)),
    "send-uncommitted-recovery": (
        Plan("send", k=2),
        one_mt,
        [1],
        Broken(read_uncommitted=True),
    ),
    "offsets": (Plan("offsets"), one_mt, [1], Broken(offsets="early")),
    "commit-before": (Plan("commit-before"), one_mt, [1], Broken(offsets="early")),
    "commit-after": (Plan("commit-after"), revoke_then_send, [2, 1], Broken(recover=False)),
    "apply": (Plan("apply", k=1), revoke_then_send, [2, 1], Broken(recover=False)),
    "applied": (Plan("applied"), long_batch, [20], Broken(offsets="never")),
}


@pytest.mark.parametrize("name", list(EXPLICIT))
def test_a_crash_at_each_step_changes_nothing(name: str, tmp_path: Path) -> None:
    plan, build, sizes, broken = EXPLICIT[name]
    inp = build()
    ref = ck.run(tmp_path / "ref", inp.all(), inp.reference, sizes)
    assert ref.alerts, "the input must make an alert for the crash to matter"

    crashed = ck.run(
        tmp_path / "crash", inp.all(), inp.reference, sizes, [Plan(plan.step, k=plan.k)]
    )
    assert crashed.crashes == [0], "the crash point was not reached"
    assert ck.same(ref, crashed) == []
    assert crashed.duplicates() == {}

    # the same crash under a broken protocol loses or invents something
    broken_run = ck.run(
        tmp_path / "broken", inp.all(), inp.reference, sizes, [Plan(plan.step, k=plan.k)], broken
    )
    assert broken_run.crashes == [0]
    assert ck.same(ref, broken_run) != [], f"{name}: the crash is harmless even with {broken}"


def test_the_broken_protocols_are_harmless_without_a_crash(tmp_path: Path) -> None:
    """So the failures above come from the crash, not from the mutation itself."""
    for name, (_, build, sizes, broken) in EXPLICIT.items():
        inp = build()
        ref = ck.run(tmp_path / f"{name}-ref", inp.all(), inp.reference, sizes)
        other = ck.run(tmp_path / f"{name}-broken", inp.all(), inp.reference, sizes, [], broken)
        assert ck.same(ref, other) == [], name


def test_a_batch_processed_while_the_previous_one_commits_sees_its_writes(
    tmp_path: Path,
) -> None:
    """Batch by batch, each processed before the previous transaction committed: the same
    answer as one after the other, also with a crash; reads blind to the writes still
    committing (RocksDB only) lose the alert that needs batch 0's state."""
    inp = revoke_then_send()
    ref = ck.run(tmp_path / "ref", inp.all(), inp.reference, [1])
    assert ("consent.revoked", "ev-00003") in ids(ref)
    piped = ck.run(tmp_path / "piped", inp.all(), inp.reference, [1], pipelined=True)
    assert ck.same(ref, piped) == []
    for step in ("processed", "offsets", "commit-after", "applied"):
        crashed = ck.run(
            tmp_path / f"crash-{step}",
            inp.all(),
            inp.reference,
            [1],
            [Plan(step, batch=1)],
            pipelined=True,
        )
        assert crashed.crashes == [1] or crashed.crashes == [2], (step, crashed.crashes)
        assert ck.same(ref, crashed) == [], step
    blind = ck.run(
        tmp_path / "blind",
        inp.all(),
        inp.reference,
        [1],
        broken=Broken(blind_reads=True),
        pipelined=True,
    )
    assert ck.same(ref, blind) != []


def test_commit_after_crash_recovers_the_batch_from_the_changelog(tmp_path: Path) -> None:
    inp = revoke_then_send()
    crashed = ck.run(tmp_path / "c", inp.all(), inp.reference, [2, 1], [Plan("commit-after")])
    assert crashed.recovered > 0  # consent and subscriber records of batch 0
    assert crashed.aborted == 0
    assert ("consent.revoked", "ev-00003") in ids(crashed)


def test_a_crash_before_the_commit_aborts_and_redoes_the_batch(tmp_path: Path) -> None:
    inp = one_mt()
    crashed = ck.run(tmp_path / "c", inp.all(), inp.reference, [1], [Plan("offsets")])
    assert crashed.aborted == 1
    assert crashed.recovered == 0
    assert ids(crashed) == {("consent.missing", "ev-00000")}


# -- the property -----------------------------------------------------------------------

SUB = st.integers(0, len(ck.SUBSCRIBERS) - 1)
ENT = st.integers(0, 2)
OPS = st.one_of(
    st.tuples(
        st.just("mt"),
        SUB,
        ENT,
        st.sampled_from(["mkt", "shared", "ntf", "unregistered"]),
        st.sampled_from(["marketing", "notification"]),
    ),
    st.tuples(st.just("td"), SUB, ENT, st.sampled_from(["shared", "mkt"])),
    st.tuples(st.just("dlr"), SUB, ENT),
    st.tuples(st.just("flood"), SUB, ENT),
    st.tuples(st.just("repeat"), SUB, st.integers(1, 3)),
    st.tuples(
        st.just("complaint"),
        SUB,
        ENT,
        st.sampled_from(["port", "signature", "none"]),
        st.booleans(),
    ),
)
ONCE = ("processed", "offsets", "commit-before", "commit-after", "applied")
PLAN = st.one_of(
    st.builds(Plan, step=st.sampled_from(ONCE), batch=st.integers(0, 4), k=st.just(1)),
    st.builds(
        Plan, step=st.sampled_from(["send", "apply"]), batch=st.integers(0, 4), k=st.integers(1, 3)
    ),
)


def build(grants: set[tuple[int, int]], misplaced: set[int], ops: list[tuple[Any, ...]]) -> Inputs:
    inp = Inputs(S, misplaced)
    for sub, ent in sorted(grants):
        inp.grant(sub, ent)
    for op in ops:
        kind, sub, *args = op
        if kind == "mt":
            inp.mt(sub, args[0], args[1], args[2])
        elif kind == "td":
            inp.td(sub, args[0], args[1])
        elif kind == "dlr":
            inp.dlr(sub, args[0])
        elif kind == "flood":
            inp.flood(sub, args[0])
        elif kind == "repeat":
            inp.repeat(sub, args[0])
        else:
            inp.complaint(sub, args[0], args[1], args[2])
    return inp


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    grants=st.sets(st.tuples(SUB, ENT), max_size=8),
    misplaced=st.sets(SUB, max_size=2),
    ops=st.lists(OPS, min_size=1, max_size=20),
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    other=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    plans=st.lists(PLAN, min_size=2, max_size=4),
    pipelined=st.booleans(),
    ticks=st.booleans(),
)
def test_crashes_anywhere_publish_what_a_run_without_crash_publishes(
    grants: set[tuple[int, int]],
    misplaced: set[int],
    ops: list[tuple[Any, ...]],
    sizes: list[int],
    other: list[int],
    plans: list[Plan],
    pipelined: bool,
    ticks: bool,
) -> None:
    """Also with each batch processed while the previous one's transaction commits (what
    the worker does, `Pipeline._deliver_pipelined`), and with the 1-s tick between batches
    (its transaction chained after one in flight, crashes in it included): the reference
    run is sequential, without ticks."""
    inp = build(grants, misplaced, ops)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ref = ck.run(root / "ref", inp.all(), inp.reference, sizes)
        crashed = ck.run(
            root / "crash",
            inp.all(),
            inp.reference,
            sizes,
            plans,
            pipelined=pipelined,
            ticks=ticks,
        )
        rebatched = ck.run(root / "other", inp.all(), inp.reference, other, pipelined=pipelined)
    fired = [p for p in plans if p.fired_at is not None]
    for p in fired:
        event(f"crash at {p.step}")
    event(f"{len(fired)} crash(es)")
    event("pipelined" if pipelined else "sequential")
    event("ticks" if ticks else "no ticks")
    if crashed.duplicates():
        event("duplicate alert ids")
    note(f"plans {plans}; batches {ref.batches}/{crashed.batches}")
    assert ck.same(ref, crashed) == []
    assert ck.same(ref, rebatched) == []
    assert crashed.dead_letters == 0
