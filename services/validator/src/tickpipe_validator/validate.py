"""Applies the rules to one batch: pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tickpipe_shared.instruments.schedule import TradingSchedule
from tickpipe_shared.wire.batch import TickBatch

from tickpipe_validator.rules import RULES, Rule, RuleParams


class RejectedUnitError(ValueError):
    """A unit rejected by a rule whose action is ``reject``; the message names rule and ticks."""


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
    default thresholds by ``thresholds`` (rule name → number).

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


def validate(
    batch: TickBatch,
    rules: Sequence[ConfiguredRule],
    at_ms: int,
    schedule: TradingSchedule | None = None,
) -> TickBatch:
    """The validated batch: flagged ticks have their rules' bits set in ``flags`` (uint16,
    shape ``(rows,)``), dropped ticks are removed, and ``meta.quality`` counts the ticks each
    rule hit (rules that hit nothing are left out). Every rule sees the whole input batch (a
    tick dropped by one rule still counts for the others). ``schedule``: the instrument's
    trading schedule, for the ``gap`` rule (``None``: unknown, the rule hits nothing).

    Raises :class:`RejectedUnitError` when a ``reject`` rule hits any tick.
    """
    ticks = batch.ticks
    flags = np.zeros(len(ticks), dtype=np.uint16)
    drop = np.zeros(len(ticks), dtype=np.bool_)
    quality: dict[str, int] = {}
    for configured in rules:
        rule = configured.rule
        hit = rule.check(ticks, batch.meta, RuleParams(configured.threshold, schedule))
        count = int(np.count_nonzero(hit))
        if not count:
            continue
        quality[rule.name] = count
        if configured.action == "reject":
            first = int(np.argmax(hit))
            raise RejectedUnitError(
                f"{batch.meta.unit.key} part {batch.meta.part}: rule {rule.name} "
                f"({rule.description}) hit {count} of {len(ticks)} ticks, first at row {first} "
                f"(ts_ms={int(ticks.ts_ms[first])}, bid={int(ticks.bid[first])}, "
                f"ask={int(ticks.ask[first])} points)"
            )
        if configured.action == "drop":
            drop |= hit
        else:
            flags[hit] |= np.uint16(rule.mask)
    if drop.any():
        keep = ~drop
        return TickBatch(batch.meta, ticks.take(keep), None).with_flags(flags[keep], quality, at_ms)
    return batch.with_flags(flags, quality, at_ms)
