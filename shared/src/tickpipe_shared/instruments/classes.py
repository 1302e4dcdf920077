"""Asset classes: what kind of market an instrument is, and which kinds never close.

Classes are the ones of :class:`~tickpipe_shared.wire.batch.BatchMeta` (``fx``, ``metal``,
``index``, ``stock``, ``crypto``, ``commodity``, ``synthetic``, ``bond``, ``etf``, plus
``option`` for Polygon's ``O:`` tickers); ``""`` when unknown. Dukascopy names the class by its
group code (instrument list and details); Deriv symbols and Polygon tickers by their prefix
(``../shared/docs/deriv.md``, ``../shared/docs/polygon.md``).
"""

from __future__ import annotations

#: Classes whose market trades around the clock, every day.
ALWAYS_OPEN_CLASSES = frozenset({"synthetic", "crypto"})

#: Dukascopy group codes (prefixes) → asset class; ``VCCY`` is "virtual currency".
_GROUP_CLASSES = (
    ("FX_METALS", "metal"),
    ("CMD_METALS", "metal"),
    ("FX", "fx"),
    ("VCCY", "crypto"),
    ("CRYPTO", "crypto"),
    ("IDX", "index"),
    ("CMD", "commodity"),
    ("ETF", "etf"),
    ("BND", "bond"),
    ("STCK", "stock"),
)
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


def asset_class_of_group(group_code: str) -> str:
    """``FX_MAJORS`` → ``fx``, ``FX_METALS`` → ``metal``, ``VCCY`` → ``crypto``,
    ``STCK_CFD`` → ``stock``…; ``""`` when the group is unknown."""
    g = group_code.upper()
    for prefix, cls in _GROUP_CLASSES:
        if g.startswith(prefix):
            return cls
    return ""


def asset_class_of(source: str, symbol: str) -> str:
    """The asset class of ``symbol`` as ``source`` (``polygon`` or ``deriv``) names it:
    ``C:EURUSD`` → ``fx``, ``AAPL`` → ``stock``, ``R_50`` → ``synthetic``, ``frxEURUSD`` →
    ``fx``; ``""`` for an unknown Deriv prefix or another source (Dukascopy: see
    :func:`asset_class_of_group`)."""
    if source == "polygon":
        return next((c for p, c in POLYGON_PREFIXES if symbol.startswith(p)), "stock")
    if source == "deriv":
        return next((c for p, c in DERIV_PREFIXES if symbol.startswith(p)), "")
    return ""
