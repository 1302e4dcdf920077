"""Instrument details from the Dukascopy JSON API (``instruments/<CODE>``): what they say.

The detail gives what the instrument list does not: the trading schedule and holidays
(:meth:`~tickpipe_shared.instruments.schedule.TradingSchedule.from_instrument_detail`), the
first available timestamp per period (``histories``), the group (→ asset class).
Spec: ``../shared/docs/dukascopy.md`` §3.4; sample: ``../shared/data/dukascopy/json/instruments/``.

Pure parsing: the catalog (:mod:`tickpipe_shared.instruments.catalog`) downloads and caches
them, and decides the schedule of an instrument without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from tickpipe_shared.instruments.classes import asset_class_of_group
from tickpipe_shared.instruments.schedule import ScheduleFormatError, TradingSchedule

log = structlog.get_logger()

#: ``histories[].period`` per unit kind family (ticks, and candles by timeframe unit).
HISTORY_PERIODS = {"ticks": "TICK", "m": "MINUTE", "h": "HOUR", "d": "DAY"}


@dataclass(frozen=True, slots=True)
class InstrumentDetail:
    """The parts of an instrument detail the pipeline uses.

    ``schedule``: trading schedule with holidays (``None`` when the detail has none or one this
    project cannot parse — logged). ``history_start_ms``: period (``TICK``, ``MINUTE``,
    ``HOUR``, ``DAY``) → first available timestamp, ms since the epoch (UTC). ``group_code``:
    Dukascopy's group (``FX_MAJORS``, ``CRYPTO``…), ``asset_class`` derived from it.
    """

    code: str
    schedule: TradingSchedule | None
    history_start_ms: Mapping[str, int]
    group_code: str
    asset_class: str

    @classmethod
    def parse(cls, code: str, data: Mapping[str, Any]) -> InstrumentDetail:
        """Build from a parsed ``instruments/<CODE>`` body. Never raises for odd content: an
        unparseable schedule becomes ``None`` (logged), odd ``histories`` entries are skipped."""
        schedule: TradingSchedule | None = None
        if data.get("tradeSchedule"):
            try:
                schedule = TradingSchedule.from_instrument_detail(data)
            except ScheduleFormatError as e:
                log.warning("instrument schedule not understood", code=code, error=str(e))
        starts: dict[str, int] = {}
        for h in data.get("histories") or []:
            if isinstance(h, dict) and isinstance(h.get("period"), str):
                t = h.get("from")
                if isinstance(t, int | float) and not isinstance(t, bool):
                    starts[h["period"]] = int(t)
        group = str(data.get("groupCode") or "")
        return cls(code, schedule, starts, group, asset_class_of_group(group))

    def history_start(self, kind: str) -> int | None:
        """First available ms of ``kind`` data (``ticks`` or ``candles:<tf>:<side>``), if known."""
        if kind == "ticks":
            period = HISTORY_PERIODS["ticks"]
        else:
            tf = kind.split(":")[1] if kind.count(":") == 2 else ""
            unit = tf.lstrip("0123456789")
            period = HISTORY_PERIODS.get(unit, "")
        return self.history_start_ms.get(period)
