"""Asset classes of instruments the fetcher has no registry for: Deriv symbols and Polygon
tickers, told apart by their prefix (``../shared/docs/deriv.md``, ``../shared/docs/polygon.md``).

Classes are the ones of :class:`~tickpipe_shared.wire.batch.BatchMeta` (``fx``, ``crypto``,
``index``, ``stock``, ``synthetic`` …, plus ``option`` for Polygon's ``O:`` tickers); ``""``
when the prefix says nothing. Synthetic indices and crypto trade around the clock.
"""

from __future__ import annotations

#: Polygon ticker prefix → class; a ticker without one is a stock.
POLYGON_PREFIXES = (("C:", "fx"), ("X:", "crypto"), ("I:", "index"), ("O:", "option"))
#: Deriv symbol prefix → class (symbols are case-sensitive: ``frxEURUSD``, ``R_50``, ``1HZ100V``).
DERIV_PREFIXES = (
    ("frx", "fx"),
    ("cry", "crypto"),
    ("OTC_", "index"),
    ("WLD", "index"),
    ("R_", "synthetic"),
    ("1HZ", "synthetic"),
    ("BOOM", "synthetic"),
    ("CRASH", "synthetic"),
    ("JD", "synthetic"),
    ("stpRNG", "synthetic"),
    ("RDBEAR", "synthetic"),
    ("RDBULL", "synthetic"),
)
#: Classes whose market never closes.
ALWAYS_OPEN = frozenset({"synthetic", "crypto"})


def asset_class_of(source: str, symbol: str) -> str:
    """The asset class of ``symbol`` as ``source`` (``polygon`` or ``deriv``) names it:
    ``C:EURUSD`` → ``fx``, ``AAPL`` → ``stock``, ``R_50`` → ``synthetic``, ``frxEURUSD`` →
    ``fx``; ``""`` for an unknown Deriv prefix or another source."""
    if source == "polygon":
        return next((c for p, c in POLYGON_PREFIXES if symbol.startswith(p)), "stock")
    if source == "deriv":
        return next((c for p, c in DERIV_PREFIXES if symbol.startswith(p)), "")
    return ""
