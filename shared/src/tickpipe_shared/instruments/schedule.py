"""When an instrument's market is open: weekly trading windows plus holidays, vectorised.

A :class:`TradingSchedule` is a list of *eras* — weekly windows in one time zone, valid over a
``[from, till)`` range of time — minus *holidays*, ``[from, till)`` intervals in ms since the
epoch (UTC). It answers, for numpy arrays of timestamps (int64 ms, UTC), whether the market is
open (:meth:`TradingSchedule.is_open`) and how many milliseconds of open market lie between two
times (:meth:`TradingSchedule.open_ms_between`). Internally it materialises the open intervals
covering the queried range (one Python step per week and window, never per timestamp) and
answers with :func:`numpy.searchsorted`.

Sources:

* :meth:`TradingSchedule.from_instrument_detail` parses the Dukascopy JSON API instrument
  detail (``instruments/<CODE>``, ``../shared/docs/dukascopy.md`` §3.4). Fields relied on:

  - ``defaultTimezone`` (IANA zone name, e.g. ``America/New_York``): the zone the session times
    are in. Required when ``tradeSchedule`` is present.
  - ``tradeSchedule``: a non-empty list of eras ``{id, from, to, sessions}``. ``from`` / ``to``
    (ms since the epoch or ``null`` = unbounded) bound the era's validity; ``id`` is ignored.
    ``sessions`` maps ``MONDAY`` … ``SUNDAY`` to a list of sessions
    ``{start, end, previousDayStart, previousDayEnd}``: ``start`` / ``end`` are local wall times
    ``HH:MM[:SS[.fff]]`` (``24:00`` allowed) on that day, or on the day before when the matching
    ``previousDay…`` flag is true. A day that is not listed is closed. EUR-USD has ``MONDAY`` …
    ``FRIDAY`` each ``17:00`` the previous day → ``17:00`` (New York): open Sunday 17:00 to
    Friday 17:00 New York time, i.e. 22:00 → 22:00 UTC in winter and 21:00 → 21:00 UTC in
    summer, which matches the closed hours of the legacy data (§2.8).
  - ``holidays``: a list of ``{from, till}`` in ms (UTC); missing or ``null`` means none.

  Any other shape (unknown weekday, unknown keys in an era or session, a malformed time, a
  session that ends before it starts, an unknown zone) raises :class:`ScheduleFormatError` with
  the path of the offending value: better no schedule than a wrong one.

* :data:`FX_DEFAULT_SCHEDULE` for currency pairs without a detail: open from Sunday 17:00 to
  Friday 17:00 New York time (22:00 UTC in winter, 21:00 UTC while the US is on summer time),
  as the real instrument details describe the FX week. Holidays are unknown.
  :func:`default_schedule_for` returns it for six-letter pairs of two fiat currencies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import ArrayLike, NDArray

SECOND_MS = 1000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
#: 1970-01-05, the first Monday after the epoch (a Thursday), in ms.
_FIRST_MONDAY_MS = 4 * DAY_MS

WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_ERA_KEYS = {"id", "from", "to", "sessions"}
_SESSION_KEYS = {"start", "end", "previousDayStart", "previousDayEnd"}
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$")

_EMPTY = np.empty(0, dtype=np.int64)


class ScheduleFormatError(ValueError):
    """An instrument detail whose schedule this module does not understand; the message names
    the offending field."""


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    """The market is open from ``start_ms`` to ``end_ms`` (exclusive), both offsets from Monday
    00:00 local time. ``start_ms`` may be negative (the Sunday before) and ``end_ms`` may exceed
    a week; ``end_ms > start_ms``."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ValueError(
                f"window ends at {self.end_ms} ms, not after its start {self.start_ms}"
            )


@dataclass(frozen=True, slots=True)
class ScheduleEra:
    """Weekly windows in ``timezone`` (IANA name), valid in ``[valid_from_ms, valid_till_ms)``
    (``None``: unbounded)."""

    windows: tuple[WeeklyWindow, ...]
    timezone: str = "UTC"
    valid_from_ms: int | None = None
    valid_till_ms: int | None = None


def _zone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "ETC/UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleFormatError(
            f"unknown time zone {name!r} (no IANA tz database entry; install tzdata?)"
        ) from None


Intervals = tuple[NDArray[np.int64], NDArray[np.int64]]


def _union(starts: NDArray[np.int64], ends: NDArray[np.int64]) -> Intervals:
    """Sorted, disjoint, non-touching intervals covering the same time as the input ones."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return _EMPTY, _EMPTY
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(starts), dtype=np.bool_)
    new[1:] = starts[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(starts) - 1)
    return starts[first], reach[last]


def _contains(
    starts: NDArray[np.int64], ends: NDArray[np.int64], x: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """For sorted disjoint ``[starts, ends)``: True where ``x`` lies inside one."""
    if not len(starts):
        return np.zeros(x.shape, dtype=np.bool_)
    i = np.searchsorted(starts, x, side="right") - 1
    return (i >= 0) & (x < ends[np.maximum(i, 0)])


def _difference(a: Intervals, b: Intervals) -> Intervals:
    """Sorted disjoint intervals ``a`` minus sorted disjoint intervals ``b``."""
    if not len(a[0]) or not len(b[0]):
        return a
    bounds = np.unique(np.concatenate([a[0], a[1], b[0], b[1]]))
    left, right = bounds[:-1], bounds[1:]
    keep = _contains(*a, left) & ~_contains(*b, left)
    if not keep.any():
        return _EMPTY, _EMPTY
    prev = np.zeros_like(keep)
    prev[1:] = keep[:-1]
    nxt = np.zeros_like(keep)
    nxt[:-1] = keep[1:]
    return left[keep & ~prev], right[keep & ~nxt]


class TradingSchedule:
    """Weekly trading windows (one or more eras) minus holidays. Immutable; cheap to query."""

    __slots__ = ("_holidays", "eras")

    def __init__(self, eras: Sequence[ScheduleEra], holidays: Iterable[tuple[int, int]] = ()):
        self.eras = tuple(eras)
        for era in self.eras:
            _zone(era.timezone)  # fail now, not at the first query
        hol = [(int(f), int(t)) for f, t in holidays]
        for f, t in hol:
            if t <= f:
                raise ValueError(f"holiday [{f}, {t}) ends before it starts")
        self._holidays = _union(
            np.array([f for f, _ in hol], dtype=np.int64),
            np.array([t for _, t in hol], dtype=np.int64),
        )

    @classmethod
    def weekly(
        cls,
        windows: Iterable[tuple[int, int]],
        timezone: str = "UTC",
        holidays: Iterable[tuple[int, int]] = (),
    ) -> TradingSchedule:
        """One era of ``(start_ms, end_ms)`` windows measured from Monday 00:00 in ``timezone``."""
        era = ScheduleEra(tuple(WeeklyWindow(s, e) for s, e in windows), timezone)
        return cls([era], holidays)

    @classmethod
    def from_instrument_detail(cls, detail: Mapping[str, Any]) -> TradingSchedule:
        """Parse the JSON API instrument detail's ``tradeSchedule``, ``defaultTimezone`` and
        ``holidays`` (see the module docstring). Raises :class:`ScheduleFormatError`."""
        code = detail.get("code", "?") if isinstance(detail, Mapping) else "?"
        where = f"instrument detail {code}"
        if not isinstance(detail, Mapping):
            raise ScheduleFormatError(f"{where}: expected a JSON object, got {type(detail)}")
        trade = detail.get("tradeSchedule")
        if not isinstance(trade, list) or not trade:
            raise ScheduleFormatError(
                f"{where}: tradeSchedule is {trade!r}, expected a non-empty list of eras"
            )
        tz = detail.get("defaultTimezone")
        if not isinstance(tz, str) or not tz:
            raise ScheduleFormatError(f"{where}: defaultTimezone is {tz!r}, expected a zone name")
        _zone(tz)
        eras = [_parse_era(e, f"{where}: tradeSchedule[{i}]", tz) for i, e in enumerate(trade)]
        return cls(eras, _parse_holidays(detail.get("holidays"), f"{where}: holidays"))

    def __repr__(self) -> str:
        return f"TradingSchedule(eras={self.eras!r}, holidays={len(self._holidays[0])})"

    # --- queries --------------------------------------------------------------------------

    def intervals(self, lo_ms: int, hi_ms: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Sorted disjoint open intervals ``(starts, ends)`` covering at least ``[lo, hi]``
        (intervals are whole: they may extend beyond the range)."""
        lo, hi = int(lo_ms) - WEEK_MS, int(hi_ms) + WEEK_MS
        starts: list[NDArray[np.int64]] = []
        ends: list[NDArray[np.int64]] = []
        for era in self.eras:
            a = lo if era.valid_from_ms is None else max(lo, era.valid_from_ms)
            b = hi if era.valid_till_ms is None else min(hi, era.valid_till_ms)
            if a >= b or not era.windows:
                continue
            s, e = _era_intervals(era, a, b)
            if era.valid_from_ms is not None:
                s = np.maximum(s, era.valid_from_ms)
            if era.valid_till_ms is not None:
                e = np.minimum(e, era.valid_till_ms)
            starts.append(s)
            ends.append(e)
        if not starts:
            return _EMPTY, _EMPTY
        open_ = _union(np.concatenate(starts), np.concatenate(ends))
        return _difference(open_, self._holidays)

    def is_open(self, ts_ms: ArrayLike) -> NDArray[np.bool_]:
        """True where the market is open at ``ts_ms`` (int64 ms, UTC; any shape)."""
        ts = np.asarray(ts_ms, dtype=np.int64)
        if not ts.size:
            return np.zeros(ts.shape, dtype=np.bool_)
        return _contains(*self.intervals(int(ts.min()), int(ts.max())), ts)

    def open_ms_between(self, a_ms: ArrayLike, b_ms: ArrayLike) -> NDArray[np.int64]:
        """Milliseconds of open market in ``[a, b)``, elementwise (broadcast); 0 where
        ``b <= a``."""
        a, b = np.broadcast_arrays(
            np.asarray(a_ms, dtype=np.int64), np.asarray(b_ms, dtype=np.int64)
        )
        if not a.size:
            return np.zeros(a.shape, dtype=np.int64)
        lo = int(min(a.min(), b.min()))
        hi = int(max(a.max(), b.max()))
        starts, ends = self.intervals(lo, hi)
        if not len(starts):
            return np.zeros(a.shape, dtype=np.int64)
        cum = np.concatenate([[0], np.cumsum(ends - starts)])

        def opened_before(x: NDArray[np.int64]) -> NDArray[np.int64]:
            i = np.searchsorted(starts, x, side="right") - 1
            j = np.maximum(i, 0)
            inside = np.clip(x - starts[j], 0, ends[j] - starts[j])
            out: NDArray[np.int64] = np.where(i >= 0, cum[j] + inside, 0)
            return out

        result: NDArray[np.int64] = np.maximum(opened_before(b) - opened_before(a), 0)
        return result


def _era_intervals(
    era: ScheduleEra, lo_ms: int, hi_ms: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The era's windows for every week that can touch ``[lo, hi)``, in UTC ms."""
    offsets = np.array([(w.start_ms, w.end_ms) for w in era.windows], dtype=np.int64)
    reach = int(max(-offsets[:, 0].min(), offsets[:, 1].max(), WEEK_MS))
    zone = _zone(era.timezone)
    if zone is UTC:
        first = (lo_ms - reach - _FIRST_MONDAY_MS) // WEEK_MS
        last = (hi_ms + reach - _FIRST_MONDAY_MS) // WEEK_MS + 1
        mondays = _FIRST_MONDAY_MS + np.arange(first, last + 1, dtype=np.int64) * WEEK_MS
        return (
            (mondays[:, None] + offsets[None, :, 0]).ravel(),
            (mondays[:, None] + offsets[None, :, 1]).ravel(),
        )
    # Local wall times: one conversion per week and window boundary (DST-correct).
    day = datetime.fromtimestamp((lo_ms - reach) / 1000, zone).date()
    monday = day - timedelta(days=day.weekday())
    end_day = datetime.fromtimestamp((hi_ms + reach) / 1000, zone).date()
    s: list[int] = []
    e: list[int] = []
    while monday <= end_day:
        for w in era.windows:
            s.append(_local_ms(monday, w.start_ms, zone))
            e.append(_local_ms(monday, w.end_ms, zone))
        monday += timedelta(days=7)
    return np.array(s, dtype=np.int64), np.array(e, dtype=np.int64)


def _local_ms(monday: date, offset_ms: int, zone: tzinfo) -> int:
    wall = datetime(monday.year, monday.month, monday.day) + timedelta(milliseconds=offset_ms)
    return round(wall.replace(tzinfo=zone).timestamp() * 1000)


# --- parsing the JSON API instrument detail ----------------------------------------------------


def _ms_or_none(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleFormatError(f"{where} is {value!r}, expected ms since the epoch or null")
    return value


def _time_ms(value: Any, where: str) -> int:
    m = _TIME.match(value) if isinstance(value, str) else None
    if not m:
        raise ScheduleFormatError(f"{where} is {value!r}, expected a time HH:MM[:SS[.fff]]")
    h, mi, s, frac = m.groups()
    ms = ((int(h) * 60 + int(mi)) * 60 + int(s or 0)) * 1000 + int((frac or "0").ljust(3, "0"))
    if int(mi) > 59 or int(s or 0) > 59 or ms > DAY_MS:
        raise ScheduleFormatError(f"{where} is {value!r}, not a time of day")
    return ms


def _flag(session: Mapping[str, Any], key: str, where: str) -> bool:
    value = session.get(key, False)
    if not isinstance(value, bool):
        raise ScheduleFormatError(f"{where}.{key} is {value!r}, expected true or false")
    return value


def _parse_era(era: Any, where: str, tz: str) -> ScheduleEra:
    if not isinstance(era, Mapping):
        raise ScheduleFormatError(f"{where} is {era!r}, expected an object")
    unknown = set(era) - _ERA_KEYS
    if unknown:
        raise ScheduleFormatError(f"{where} has unknown fields {sorted(unknown)}")
    sessions = era.get("sessions")
    if not isinstance(sessions, Mapping):
        raise ScheduleFormatError(f"{where}.sessions is {sessions!r}, expected an object by day")
    windows: list[WeeklyWindow] = []
    for day, items in sessions.items():
        if day not in WEEKDAYS:
            raise ScheduleFormatError(f"{where}.sessions has unknown day {day!r}")
        if not isinstance(items, list):
            raise ScheduleFormatError(f"{where}.sessions.{day} is {items!r}, expected a list")
        d = WEEKDAYS.index(day)
        for k, session in enumerate(items):
            at = f"{where}.sessions.{day}[{k}]"
            if not isinstance(session, Mapping):
                raise ScheduleFormatError(f"{at} is {session!r}, expected an object")
            unknown = set(session) - _SESSION_KEYS
            if unknown:
                raise ScheduleFormatError(f"{at} has unknown fields {sorted(unknown)}")
            start = (d - _flag(session, "previousDayStart", at)) * DAY_MS + _time_ms(
                session.get("start"), f"{at}.start"
            )
            end = (d - _flag(session, "previousDayEnd", at)) * DAY_MS + _time_ms(
                session.get("end"), f"{at}.end"
            )
            if end <= start:
                raise ScheduleFormatError(f"{at} ends before it starts: {dict(session)}")
            windows.append(WeeklyWindow(start, end))
    valid_from = _ms_or_none(era.get("from"), f"{where}.from")
    valid_till = _ms_or_none(era.get("to"), f"{where}.to")
    if valid_from is not None and valid_till is not None and valid_till <= valid_from:
        raise ScheduleFormatError(f"{where} is valid from {valid_from} to {valid_till}: empty")
    return ScheduleEra(tuple(windows), tz, valid_from, valid_till)


def _parse_holidays(value: Any, where: str) -> list[tuple[int, int]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ScheduleFormatError(f"{where} is {value!r}, expected a list of {{from, till}}")
    out = []
    for i, h in enumerate(value):
        if not isinstance(h, Mapping) or set(h) != {"from", "till"}:
            raise ScheduleFormatError(f"{where}[{i}] is {h!r}, expected {{from, till}}")
        f = _ms_or_none(h["from"], f"{where}[{i}].from")
        t = _ms_or_none(h["till"], f"{where}[{i}].till")
        if f is None or t is None or t <= f:
            raise ScheduleFormatError(f"{where}[{i}] is {dict(h)}: not a [from, till) interval")
        out.append((f, t))
    return out


# --- defaults ---------------------------------------------------------------------------------

#: Sunday 17:00 → Friday 17:00 New York time (22:00 UTC in winter, 21:00 UTC in summer), no
#: holidays: the FX week as the real instrument details describe it.
FX_DEFAULT_SCHEDULE = TradingSchedule.weekly(
    [(-7 * HOUR_MS, 4 * DAY_MS + 17 * HOUR_MS)], timezone="America/New_York"
)

#: Open all the time: one weekly window from Monday 00:00 to the next Monday 00:00 (UTC); the
#: weeks touch, so the open time between two instants is their distance.
ALWAYS_OPEN = TradingSchedule.weekly([(0, WEEK_MS)])

#: Fiat currency codes (ISO 4217, plus offshore CNH) whose pairs trade on the FX week.
FIAT_CURRENCIES = frozenset(
    "AED AUD BGN BRL CAD CHF CLP CNH CNY COP CZK DKK EUR GBP HKD HRK HUF IDR ILS INR ISK JPY KRW "
    "KWD MXN MYR NOK NZD PHP PLN QAR RON RUB SAR SEK SGD THB TRY TWD USD ZAR".split()
)


def is_fx_pair(instrument: str) -> bool:
    """True for a canonical six-letter pair of two fiat currencies (``EURUSD``; not ``XAUUSD``
    or ``BTCUSD``, which trade on other schedules)."""
    name = re.sub(r"[^A-Za-z0-9]", "", instrument).upper()
    return len(name) == 6 and name[:3] in FIAT_CURRENCIES and name[3:] in FIAT_CURRENCIES


def default_schedule_for(instrument: str) -> TradingSchedule | None:
    """The schedule to assume without an instrument detail: :data:`FX_DEFAULT_SCHEDULE` for
    currency pairs (:func:`is_fx_pair`), ``None`` (unknown) otherwise."""
    return FX_DEFAULT_SCHEDULE if is_fx_pair(instrument) else None
