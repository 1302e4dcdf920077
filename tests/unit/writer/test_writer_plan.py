"""``tickpipe_writer.plan``: idempotent unit replace, planned without a database."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tickpipe_shared.columns import Ticks
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta, TickBatch
from tickpipe_writer.plan import LedgerState, plan, unit_id

T0 = 1_549_238_400_000
HOUR = 3_600_000
SHA_A = "aa" * 32
SHA_B = "bb" * 32


def part(
    p: int,
    count: int = 1,
    rows: int = 2,
    sha: str = SHA_A,
    start: int = T0,
    instrument: str = "EURUSD",
    tag: int = 0,
) -> TickBatch:
    t = Ticks(
        np.arange(rows, dtype=np.int64) + start,
        np.full(rows, 100 + tag, dtype=np.int64),
        np.full(rows, 101 + tag, dtype=np.int64),
        np.ones(rows),
        np.ones(rows),
    )
    meta = BatchMeta(
        Unit("dukascopy-bi5", instrument, "ticks", start, start + HOUR),
        p,
        count,
        rows,
        5,
        sha,
        "r",
        T0,
        T0,
    )
    return TickBatch(meta, t)


UID = ("EURUSD", "ticks", T0)


def test_unit_id() -> None:
    assert unit_id(part(0).meta) == UID


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (LedgerState(3, 3, 10, SHA_A), "stored"),
        (LedgerState(1, 1, 0, SHA_A), "empty"),
        (LedgerState(1, 3, 10, SHA_A), "partial"),
        (LedgerState(0, 1, 0, SHA_A), "partial"),
    ],
)
def test_ledger_state(state: LedgerState, expected: str) -> None:
    assert state.state == expected


def test_new_unit_inserted_without_delete() -> None:
    b = part(0, rows=4)
    work = plan([b], {})
    assert work.deletes == []
    assert work.inserts == [b]
    assert work.duplicates == 0
    state, last = work.ledger[UID]
    assert state == LedgerState(1, 1, 4, SHA_A) and state.state == "stored"
    assert last is b


def test_new_empty_unit() -> None:
    work = plan([part(0, rows=0)], {})
    assert work.ledger[UID][0].state == "empty"
    assert work.deletes == []


def test_known_unit_part0_deletes_then_inserts() -> None:
    b = part(0, sha=SHA_B)
    work = plan([b], {UID: LedgerState(1, 1, 7, SHA_A)})
    assert work.deletes == [("EURUSD", "ticks", T0, T0 + HOUR)]
    assert work.inserts == [b]
    assert work.ledger[UID][0] == LedgerState(1, 1, 2, SHA_B)


def test_known_unit_same_payload_part0_is_replaced_again() -> None:
    work = plan([part(0)], {UID: LedgerState(1, 1, 2, SHA_A)})
    assert len(work.deletes) == 1 and len(work.inserts) == 1 and work.duplicates == 0


def test_multi_part_unit_in_order() -> None:
    bs = [part(i, count=3, rows=i + 1) for i in range(3)]
    work = plan(bs, {})
    assert work.inserts == bs
    state, last = work.ledger[UID]
    assert state == LedgerState(3, 3, 6, SHA_A) and state.state == "stored"
    assert last is bs[2]


def test_later_part_same_sha_already_written_is_skipped() -> None:
    ledger = {UID: LedgerState(2, 3, 4, SHA_A)}
    work = plan([part(1, count=3)], ledger)
    assert work.inserts == [] and work.deletes == [] and work.duplicates == 1
    assert work.ledger == {}


def test_next_part_continues_partial_unit() -> None:
    ledger = {UID: LedgerState(2, 3, 4, SHA_A)}
    b = part(2, count=3, rows=5)
    work = plan([b], ledger)
    assert work.inserts == [b] and work.deletes == []
    assert work.ledger[UID][0] == LedgerState(3, 3, 9, SHA_A)


def test_same_unit_twice_in_one_transaction_known_unit() -> None:
    first = [part(0, count=2, tag=1), part(1, count=2, tag=1)]
    second = [part(0, count=2, tag=2), part(1, count=2, tag=2)]
    work = plan([*first, *second], {UID: LedgerState(2, 2, 4, SHA_A)})
    assert work.deletes == [("EURUSD", "ticks", T0, T0 + HOUR)]  # once
    assert work.inserts == second
    assert all(b is s for b, s in zip(work.inserts, second, strict=True))
    assert work.ledger[UID][0] == LedgerState(2, 2, 4, SHA_A)
    assert work.ledger[UID][1] is second[1]


def test_same_unit_twice_in_one_transaction_new_unit() -> None:
    first = [part(0, count=2, tag=1), part(1, count=2, tag=1)]
    second = [part(0, count=2, tag=2), part(1, count=2, tag=2)]
    work = plan([*first, *second], {})
    assert work.deletes == []
    assert [id(b) for b in work.inserts] == [id(b) for b in second]
    assert work.duplicates == 0


def test_redelivered_suffix_is_skipped() -> None:
    a = [part(i, count=3) for i in range(3)]
    redelivered = [part(1, count=3), part(2, count=3)]
    work = plan([*a, *redelivered], {})
    assert work.inserts == a
    assert work.duplicates == 2
    assert work.ledger[UID][0] == LedgerState(3, 3, 6, SHA_A)


def test_redelivered_suffix_across_transactions_is_skipped() -> None:
    work = plan([part(1, count=3), part(2, count=3)], {UID: LedgerState(3, 3, 6, SHA_A)})
    assert work.inserts == [] and work.duplicates == 2 and work.deletes == []


def test_later_part_of_other_payload_is_an_orphan() -> None:
    # Part 0 of a new payload was lost (or another source interleaves): never mix payloads.
    b = part(1, count=3, sha=SHA_B, rows=4)
    work = plan([b], {UID: LedgerState(3, 3, 6, SHA_A)})
    assert work.inserts == [] and work.ledger == {} and work.orphans == 1


def test_part_after_a_gap_is_an_orphan_and_the_unit_stays_partial() -> None:
    # The validator rejected part 1: part 2 must not make the unit look complete.
    p0, p2 = part(0, count=3), part(2, count=3)
    work = plan([p0, p2], {})
    assert work.inserts == [p0] and work.orphans == 1
    state = work.ledger[UID][0]
    assert state == LedgerState(1, 3, 2, SHA_A) and state.state == "partial"


def test_later_part_of_an_unknown_unit_is_an_orphan() -> None:
    work = plan([part(1, count=3)], {})
    assert work.inserts == [] and work.orphans == 1


def test_redelivered_last_part_of_a_complete_unit_is_reconfirmed() -> None:
    last = part(2, count=3)
    work = plan([last], {UID: LedgerState(3, 3, 6, SHA_A)})
    assert work.inserts == [] and work.duplicates == 1
    assert work.reconfirmed == {UID: (LedgerState(3, 3, 6, SHA_A), last)}
    assert plan([part(1, count=3)], {UID: LedgerState(3, 3, 6, SHA_A)}).reconfirmed == {}


def test_several_units_planned_independently() -> None:
    other = ("GBPUSD", "ticks", T0)
    a0 = part(0)
    b0 = part(0, instrument="GBPUSD")
    c0 = part(0, start=T0 + HOUR)
    work = plan([a0, b0, c0], {other: LedgerState(1, 1, 3, SHA_B)})
    assert work.inserts == [a0, b0, c0]
    assert work.deletes == [("GBPUSD", "ticks", T0, T0 + HOUR)]
    assert set(work.ledger) == {UID, other, ("EURUSD", "ticks", T0 + HOUR)}


def test_part0_drops_pending_rows_of_only_that_unit() -> None:
    a0 = part(0, count=2)
    b0 = part(0, instrument="GBPUSD")
    a0_again = part(0, count=2, tag=5)
    work = plan([a0, b0, a0_again], {})
    assert work.inserts == [b0, a0_again]


def suspect_empty(sha: str = SHA_B) -> TickBatch:
    b = part(0, rows=0, sha=sha)
    return TickBatch(replace(b.meta, suspect_empty=True), b.ticks)


def test_suspect_empty_payload_does_not_replace_a_stored_unit() -> None:
    stored = LedgerState(1, 1, 7, SHA_A)
    b = suspect_empty()
    work = plan([b], {UID: stored})
    assert work.deletes == [] and work.inserts == [] and work.ledger == {}
    assert work.kept_over_suspect_empty == 1
    assert work.reconfirmed == {UID: (stored, b)}  # reported again: the request completes


@pytest.mark.parametrize(
    "ledger",
    [{}, {UID: LedgerState(1, 1, 0, SHA_A)}, {UID: LedgerState(1, 3, 5, SHA_A)}],
    ids=["new", "empty", "partial"],
)
def test_suspect_empty_payload_is_recorded_over_nothing_better(
    ledger: dict[tuple[str, str, int], LedgerState],
) -> None:
    work = plan([suspect_empty()], ledger)
    assert work.ledger[UID][0].state == "suspect-empty"
    assert work.kept_over_suspect_empty == 0
    assert work.deletes == ([] if not ledger else [("EURUSD", "ticks", T0, T0 + HOUR)])


def test_data_after_suspect_empty_replaces_it() -> None:
    got = part(0, rows=3, sha=SHA_A)
    work = plan([got], {UID: LedgerState(1, 1, 0, SHA_B, True)})
    assert work.ledger[UID][0].state == "stored" and work.inserts == [got]
