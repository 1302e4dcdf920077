"""Applies the rules to one batch: pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tickpipe_shared.wire.batch import TickBatch

from tickpipe_validator.rules import RULES, Rule


class RejectedUnitError(ValueError):
    """A unit rejected by a rule whose action is ``reject``; the message names rule and ticks."""


class ConfigError(ValueError):
    """An unknown rule or an action the rule does not allow."""


@dataclass(frozen=True, slots=True)
class ConfiguredRule:
    """A rule with the action in force."""

    rule: Rule
    action: str


def configure(actions: Mapping[str, str], rules: Sequence[Rule] = RULES) -> list[ConfiguredRule]:
    """Rules with their default actions overridden by ``actions`` (rule name → action).

    Raises :class:`ConfigError` for an unknown rule name or a disallowed action.
    """
    by_name = {r.name: r for r in rules}
    unknown = set(actions) - set(by_name)
    if unknown:
        raise ConfigError(f"unknown validation rules {sorted(unknown)}; known: {sorted(by_name)}")
    out = []
    for rule in rules:
        action = actions.get(rule.name, rule.action)
        if action not in rule.allowed:
            raise ConfigError(
                f"rule {rule.name!r} cannot {action!r}; allowed: {', '.join(rule.allowed)}"
            )
        out.append(ConfiguredRule(rule, action))
    return out


def validate(batch: TickBatch, rules: Sequence[ConfiguredRule], at_ms: int) -> TickBatch:
    """The validated batch: flagged ticks have their rules' bits set in ``flags`` (uint16,
    shape ``(rows,)``), dropped ticks are removed, and ``meta.quality`` counts the ticks each
    rule hit (rules that hit nothing are left out).

    Raises :class:`RejectedUnitError` when a ``reject`` rule hits any tick.
    """
    ticks = batch.ticks
    flags = np.zeros(len(ticks), dtype=np.uint16)
    drop = np.zeros(len(ticks), dtype=np.bool_)
    quality: dict[str, int] = {}
    for configured in rules:
        rule = configured.rule
        hit = rule.check(ticks, batch.meta)
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
