"""What each source can serve: kinds, candle timeframes and sides. Requests are checked
against this table (:mod:`tickpipe_shared.wire.requests`) before any unit is planned.

* ``dukascopy-json`` / ``dukascopy-bi5``: ticks; BID and ASK candles of 1m, 1h and 1d (the
  sources' files; coarser candles come from the OHLCV aggregates over ticks or 1m candles).
  Spec: ``../shared/docs/dukascopy.md``.
* ``deriv``: ticks (one quoted price: stored as bid = ask = quote, no volume) and ``mid``
  candles of the granularities the legacy ``ticks_history`` schema allows. Spec:
  ``../shared/docs/deriv.md``.
* ``polygon``: ``trade`` aggregates of any multiplier and timespan (second … year); no ticks.
  Spec: ``../shared/docs/polygon.md``.
* ``synthetic``: generated ticks for volume runs (no network; :mod:`tickpipe_shared.synthetic`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tickpipe_shared.kinds import CANDLES, TICKS, Kind, Timeframe


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A source's capabilities. ``timeframes``: the candle timeframes it serves (``None``: any
    well-formed timeframe). ``sides``: candle sides it serves, the first being the default."""

    name: str
    kinds: tuple[str, ...]
    timeframes: frozenset[Timeframe] | None
    sides: tuple[str, ...]
    description: str

    @property
    def default_side(self) -> str:
        """The side used when a candle request names none."""
        return self.sides[0]

    def kind_for(self, kind: str, timeframe: str | None, side: str | None) -> Kind:
        """The unit kind of a request, checked against this source.

        Raises :class:`ValueError` naming the field: a kind the source does not serve, a
        timeframe missing for candles or given for ticks, an unsupported timeframe or side.
        """
        if kind not in self.kinds:
            raise ValueError(
                f"kind: source {self.name!r} serves {' and '.join(self.kinds)}, not {kind!r}"
            )
        if kind == TICKS:
            if timeframe is not None or side is not None:
                raise ValueError("timeframe/side: only candle requests take a timeframe and side")
            return Kind.ticks()
        if timeframe is None:
            raise ValueError("timeframe: a candle request needs a timeframe (e.g. 1m, 1h, 1d)")
        tf = Timeframe.parse(timeframe)
        if self.timeframes is not None and tf not in self.timeframes:
            served = ", ".join(str(t) for t in sorted(self.timeframes, key=_tf_order))
            raise ValueError(
                f"timeframe: source {self.name!r} does not serve {tf} candles (serves {served})"
            )
        side = side or self.default_side
        if side not in self.sides:
            raise ValueError(
                f"side: source {self.name!r} serves {', '.join(self.sides)} candles, not {side!r}"
            )
        return Kind.candles(tf, side)


def _tf_order(tf: Timeframe) -> int:
    return tf.duration_ms or 0


def _tfs(*names: str) -> frozenset[Timeframe]:
    return frozenset(Timeframe.parse(n) for n in names)


_DUKASCOPY_TFS = _tfs("1m", "1h", "1d")
#: Granularities of the legacy ``ticks_history`` schema (deriv.md §2), in seconds.
DERIV_GRANULARITIES = (60, 120, 180, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)

SOURCES: dict[str, SourceSpec] = {
    "dukascopy-json": SourceSpec(
        "dukascopy-json",
        (TICKS, CANDLES),
        _DUKASCOPY_TFS,
        ("bid", "ask"),
        "Dukascopy JSON API (current)",
    ),
    "dukascopy-bi5": SourceSpec(
        "dukascopy-bi5",
        (TICKS, CANDLES),
        _DUKASCOPY_TFS,
        ("bid", "ask"),
        "Dukascopy legacy .bi5 datafeed",
    ),
    "deriv": SourceSpec(
        "deriv",
        (TICKS, CANDLES),
        frozenset(Timeframe.from_seconds(s) for s in DERIV_GRANULARITIES),
        ("mid",),
        "Deriv WebSocket API, ticks_history",
    ),
    "polygon": SourceSpec(
        "polygon", (CANDLES,), None, ("trade",), "Polygon (Massive) REST aggregates"
    ),
    "synthetic": SourceSpec(
        "synthetic", (TICKS,), frozenset(), (), "Generated ticks for volume runs (no network)"
    ),
}
SOURCE_NAMES = tuple(SOURCES)
