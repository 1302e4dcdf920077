"""Planning a transaction: which units to delete, which batches to insert, which ledger rows
to write. Pure; the I/O is in :mod:`tickpipe_writer.store`. Kind-agnostic: tick and candle
batches (:data:`~tickpipe_shared.wire.batch.Batch`) are planned alike, by their metadata.

Idempotent unit replace. Records of one unit arrive in order (one key, one partition), as
parts ``0 … part_count-1``; a redelivery or replay repeats a suffix of that sequence:

* part 0 starts the unit afresh: the unit's rows already stored are deleted (only when the
  ledger knows the unit: new units skip the delete) and so are rows pending in this
  transaction;
* a later part is inserted only when it is the next one the ledger expects for the same
  payload; a part the ledger already has for that payload is a duplicate and skipped;
* any other part is an *orphan* and is not stored: a part after a gap (a middle part rejected
  by the validator) or of another payload than the one stored (its part 0 was lost, or another
  source's download of the same unit interleaves). Storing it would mark a unit complete that
  is not, or mix two payloads; the unit stays ``partial`` instead, visible in ``status``, and
  the failures of the missing parts mark it ``failed``;
* a *suspect-empty* payload (no rows although the market was open, on every attempt) of a unit
  already ``stored`` is not written: it would replace real data by a source's glitch. The unit
  is reported again as stored (``kept_over_suspect_empty``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from tickpipe_shared.wire.batch import Batch, BatchMeta, rows_of

UnitId = tuple[str, str, int]  # instrument, kind, unit start ms


class UnitWindow(NamedTuple):
    """A unit's rows to delete: ``kind`` rows of ``instrument`` in ``[start_ms, end_ms)``."""

    instrument: str
    kind: str
    start_ms: int
    end_ms: int


def unit_id(meta: BatchMeta) -> UnitId:
    """The database identity of a batch's unit."""
    return (meta.unit.instrument, meta.unit.kind, meta.unit.start_ms)


@dataclass(frozen=True, slots=True)
class LedgerState:
    """What the ingest log says about a unit (the fields the plan needs).

    ``suspect_empty``: the fetcher's verdict that the source answered "no data" although the
    market was open (``BatchMeta.suspect_empty``); it only matters for a unit without rows.
    """

    parts_written: int
    part_count: int
    rows: int
    payload_sha256: str
    suspect_empty: bool = False

    @property
    def state(self) -> str:
        """``stored``, ``empty``, ``suspect-empty`` or ``partial``."""
        if self.parts_written < self.part_count:
            return "partial"
        if self.rows:
            return "stored"
        return "suspect-empty" if self.suspect_empty else "empty"


@dataclass(slots=True)
class Plan:
    """The work of one transaction."""

    deletes: list[UnitWindow] = field(default_factory=list)
    inserts: list[Batch] = field(default_factory=list)
    ledger: dict[UnitId, tuple[LedgerState, Batch]] = field(default_factory=dict)
    duplicates: int = 0
    orphans: int = 0
    #: Suspect-empty payloads of units already stored: not written (see :func:`plan`).
    kept_over_suspect_empty: int = 0
    #: Complete units whose last part came again (a redelivery after the DB commit): nothing to
    #: write, but their progress event may have been lost with the crash: report them again.
    reconfirmed: dict[UnitId, tuple[LedgerState, Batch]] = field(default_factory=dict)
    #: Per unit, the validation counts of the parts stored by this transaction (summed), and
    #: whether the unit started afresh here (its part 0 is in this transaction).
    quality: dict[UnitId, dict[str, int]] = field(default_factory=dict)
    restarted: set[UnitId] = field(default_factory=set)


def plan(batches: Sequence[Batch], ledger: Mapping[UnitId, LedgerState]) -> Plan:
    """The plan for ``batches`` (in consumption order) given the ledger rows of their units."""
    out = Plan()
    known: dict[UnitId, LedgerState] = dict(ledger)
    deleted: set[UnitId] = set()
    for batch in batches:
        meta = batch.meta
        uid = unit_id(meta)
        state = known.get(uid)
        rows = rows_of(batch)
        if (
            meta.part == 0
            and meta.suspect_empty
            and rows == 0
            and state is not None
            and state.state == "stored"
        ):
            # The source said "nothing" for a unit we hold data of, while the market was open:
            # a glitch (a throttle, a lagging mirror), not a correction. Keep the stored rows;
            # the unit is reported again as it stands so the request still completes.
            out.kept_over_suspect_empty += 1
            out.reconfirmed[uid] = (state, batch)
            continue
        if meta.part == 0:
            if uid in ledger and uid not in deleted:
                out.deletes.append(
                    UnitWindow(
                        meta.unit.instrument, meta.unit.kind, meta.unit.start_ms, meta.unit.end_ms
                    )
                )
                deleted.add(uid)
            out.inserts = [b for b in out.inserts if unit_id(b.meta) != uid]
            out.restarted.add(uid)
            out.quality[uid] = {}
            state = LedgerState(1, meta.part_count, rows, meta.payload_sha256, meta.suspect_empty)
        elif state is None or state.payload_sha256 != meta.payload_sha256:
            out.orphans += 1  # part 0 of this payload was never stored
            continue
        elif meta.part < state.parts_written:
            out.duplicates += 1
            if meta.part == meta.part_count - 1 and state.state != "partial":
                out.reconfirmed[uid] = (state, batch)
            continue
        elif meta.part > state.parts_written:
            out.orphans += 1  # a gap: an earlier part is missing
            continue
        else:
            state = LedgerState(
                meta.part + 1,
                meta.part_count,
                state.rows + rows,
                meta.payload_sha256,
                meta.suspect_empty,
            )
        known[uid] = state
        out.inserts.append(batch)
        out.ledger[uid] = (state, batch)
        counts = out.quality.setdefault(uid, {})
        for rule, n in meta.quality.items():
            counts[rule] = counts.get(rule, 0) + n
    return out
