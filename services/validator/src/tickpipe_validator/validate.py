"""Applies the rules to one batch of ticks or candles: pure, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.instruments.schedule import TradingSchedule
from tickpipe_shared.wire.batch import Batch, BatchMeta, CandleBatch, TickBatch

from tickpipe_validator.rules import RULES, Rule, RuleParams


class RejectedUnitError(ValueError):
    """A unit rejected by a rule whose action is ``reject``; the message names rule and rows."""


class ConfigError(ValueError):
    """An unknown rule, an action the rule does not allow, or a bad threshold."""


@dataclass(frozen=True, slots=True)
class ConfiguredRule:
    """A rule with the action and threshold in force (``None``: the rule's default, or the rule
    has no threshold)."""

    rule: Rule
    action: str
    threshold: float | None = None


def configure(
    actions: Mapping[str, str],
    rules: Sequence[Rule] = RULES,
    *,
    thresholds: Mapping[str, float] | None = None,
) -> list[ConfiguredRule]:
    """Rules with their default actions overridden by ``actions`` (rule name → action) and their
    default thresholds by ``thresholds`` (rule name → number). A rule that checks ticks and
    candles has one action and one threshold for both.

    Raises :class:`ConfigError` for an unknown rule name, a disallowed action, a threshold for a
    rule that has none, or a threshold outside the rule's range.
    """
    by_name = {r.name: r for r in rules}
    unknown = set(actions) - set(by_name)
    if unknown:
        raise ConfigError(f"unknown validation rules {sorted(unknown)}; known: {sorted(by_name)}")
    thresholds = thresholds or {}
    with_threshold = sorted(r.name for r in rules if r.threshold is not None)
    unknown = set(thresholds) - set(by_name)
    if unknown:
        raise ConfigError(
            f"thresholds for unknown validation rules {sorted(unknown)}; "
            f"rules with a threshold: {with_threshold}"
        )
    out = []
    for rule in rules:
        action = actions.get(rule.name, rule.action)
        if action not in rule.allowed:
            raise ConfigError(
                f"rule {rule.name!r} cannot {action!r}; allowed: {', '.join(rule.allowed)}"
            )
        threshold = None
        if rule.threshold is not None:
            value = thresholds.get(rule.name, rule.threshold.default)
            try:
                threshold = rule.threshold.check(rule.name, value)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        elif rule.name in thresholds:
            raise ConfigError(
                f"rule {rule.name!r} has no threshold; rules with a threshold: {with_threshold}"
            )
        out.append(ConfiguredRule(rule, action, threshold))
    return out


#: One rule's verdict on a batch: the configured rule, what a hit row is, the mask of hit rows.
_Hits = Iterator[tuple[ConfiguredRule, str, NDArray[np.bool_]]]


def _apply(
    meta: BatchMeta, rows: int, what: str, hits: _Hits, row_text: Callable[[int], str]
) -> tuple[NDArray[np.uint16], NDArray[np.bool_] | None, dict[str, int]]:
    """Flags per row, the rows to keep (``None``: all) and the quality report, from the masks
    ``hits`` yields (lazily: a rejection stops the evaluation)."""
    flags = np.zeros(rows, dtype=np.uint16)
    drop = np.zeros(rows, dtype=np.bool_)
    # The decoder's notes about the source (e.g. ``source_delayed``) stay in the report.
    quality: dict[str, int] = dict(meta.quality)
    for configured, description, hit in hits:
        rule = configured.rule
        count = int(np.count_nonzero(hit))
        if not count:
            continue
        quality[rule.name] = count
        if configured.action == "reject":
            first = int(np.argmax(hit))
            raise RejectedUnitError(
                f"{meta.unit.key} part {meta.part}: rule {rule.name} ({description}) hit "
                f"{count} of {rows} {what}, first at row {first} ({row_text(first)})"
            )
        if configured.action == "drop":
            drop |= hit
        else:
            flags[hit] |= np.uint16(rule.mask)
    return flags, (~drop if drop.any() else None), quality


def validate_ticks(
    batch: TickBatch,
    rules: Sequence[ConfiguredRule],
    at_ms: int,
    schedule: TradingSchedule | None = None,
) -> TickBatch:
    """The validated tick batch: flagged ticks have their rules' bits set in ``flags`` (uint16,
    shape ``(rows,)``), dropped ticks are removed, and ``meta.quality`` counts the ticks each
    rule hit (rules that hit nothing are left out). Every rule that checks ticks sees the whole
    input batch (a tick dropped by one rule still counts for the others); candle-only rules are
    skipped. ``schedule``: the instrument's trading schedule, for the ``gap`` rule (``None``:
    unknown, the rule hits nothing).

    Raises :class:`RejectedUnitError` when a ``reject`` rule hits any tick.
    """
    ticks, meta = batch.ticks, batch.meta

    def hits() -> _Hits:
        for c in rules:
            if c.rule.check is not None:
                params = RuleParams(c.threshold, schedule)
                yield c, c.rule.description, c.rule.check(ticks, meta, params)

    def row_text(i: int) -> str:
        t = ticks
        return f"ts_ms={int(t.ts_ms[i])}, bid={int(t.bid[i])}, ask={int(t.ask[i])} points"

    flags, keep, quality = _apply(meta, len(ticks), "ticks", hits(), row_text)
    if keep is not None:
        return TickBatch(meta, ticks.take(keep), None).with_flags(flags[keep], quality, at_ms)
    return batch.with_flags(flags, quality, at_ms)


def validate_candles(
    batch: CandleBatch, rules: Sequence[ConfiguredRule], at_ms: int
) -> CandleBatch:
    """The validated candle batch: as :func:`validate_ticks`, with the rules that check candles
    (tick-only rules are skipped) and ``flags`` per candle.

    Raises :class:`RejectedUnitError` when a ``reject`` rule hits any candle, and
    :class:`~tickpipe_shared.kinds.KindError` when ``meta.unit.kind`` is not a well-formed candle
    kind.
    """
    candles, meta = batch.candles, batch.meta
    meta.parsed_kind  # noqa: B018 - a malformed kind fails here, before any rule

    def hits() -> _Hits:
        for c in rules:
            if c.rule.candle_check is not None:
                params = RuleParams(c.threshold)
                yield c, c.rule.candle_description, c.rule.candle_check(candles, meta, params)

    def row_text(i: int) -> str:
        c = candles
        return (
            f"ts_ms={int(c.ts_ms[i])}, open={int(c.open[i])}, high={int(c.high[i])}, "
            f"low={int(c.low[i])}, close={int(c.close[i])} points"
        )

    flags, keep, quality = _apply(meta, len(candles), "candles", hits(), row_text)
    if keep is not None:
        kept = CandleBatch(meta, candles.take(keep), None)
        return kept.with_flags(flags[keep], quality, at_ms)
    return batch.with_flags(flags, quality, at_ms)


@overload
def validate(
    batch: TickBatch,
    rules: Sequence[ConfiguredRule],
    at_ms: int,
    schedule: TradingSchedule | None = None,
) -> TickBatch: ...


@overload
def validate(
    batch: CandleBatch,
    rules: Sequence[ConfiguredRule],
    at_ms: int,
    schedule: TradingSchedule | None = None,
) -> CandleBatch: ...


def validate(
    batch: Batch,
    rules: Sequence[ConfiguredRule],
    at_ms: int,
    schedule: TradingSchedule | None = None,
) -> Batch:
    """:func:`validate_ticks` or :func:`validate_candles`, by the batch's type (``schedule`` is
    used by tick rules only). Raises what they raise."""
    if isinstance(batch, TickBatch):
        return validate_ticks(batch, rules, at_ms, schedule)
    return validate_candles(batch, rules, at_ms)
