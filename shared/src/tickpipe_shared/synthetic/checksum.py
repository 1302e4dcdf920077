"""A per-unit checksum of tick rows, computable both in numpy (from generated
:class:`~tickpipe_shared.columns.Ticks`) and in SQL (over the stored rows), so a check compares
the database with what was generated without keeping a copy.

Per row, with ``a = ts_ms mod 2147483629`` (a prime below 2^31), prices in points and volumes in
whole hundredths::

    v = a × (bid + 1) + ask × (a mod 65521 + 3) + 7 × bid_volume_c + 11 × ask_volume_c

Every term stays below 2^63 for prices below 2^31 points, so SQL computes ``v`` in ``bigint``;
the unit's checksum is ``Σ v mod 2^64`` (numpy: ``uint64`` wrap-around; SQL: the exact
``numeric`` sum of ``sum(bigint)`` reduced mod 2^64). It depends on which price sits at which
time, not only on the multiset of prices. Rows flagged by the validator count as stored; only
dropped rows change it.
"""

from __future__ import annotations

import numpy as np

from tickpipe_shared.columns import Ticks

_TS_MOD = 2_147_483_629
_MIX_MOD = 65_521
MOD = 1 << 64


def ticks_checksum(ticks: Ticks) -> int:
    """Checksum of ``ticks`` (volumes are rounded to hundredths), in ``[0, 2^64)``."""
    if len(ticks) == 0:
        return 0
    a = ticks.ts_ms % _TS_MOD
    bid_c = np.rint(ticks.bid_volume * 100).astype(np.int64)
    ask_c = np.rint(ticks.ask_volume * 100).astype(np.int64)
    v = a * (ticks.bid + 1) + ticks.ask * (a % _MIX_MOD + 3) + 7 * bid_c + 11 * ask_c
    return int(v.view(np.uint64).sum(dtype=np.uint64))


def row_checksum_sql(alias: str = "t") -> str:
    """SQL for ``v`` (see the module docstring) of one ``ticks`` row aliased ``alias``."""
    a = f"((extract(epoch FROM {alias}.ts) * 1000)::bigint % {_TS_MOD})"
    # Ticks store prices as integer points (migration 0006): no scale needed for them.
    bid = f"{alias}.bid_points"
    ask = f"{alias}.ask_points"
    bvol = f"coalesce(round({alias}.bid_volume * 100)::bigint, 0)"
    avol = f"coalesce(round({alias}.ask_volume * 100)::bigint, 0)"
    return f"({a} * ({bid} + 1) + {ask} * ({a} % {_MIX_MOD} + 3) + 7 * {bvol} + 11 * {avol})"


def unit_checksums_sql() -> str:
    """A query over ``ticks`` of instrument ``$1`` in ``[$2, $3)``: one
    row per UTC hour that has ticks, ``(unit_start timestamptz, rows bigint, checksum
    numeric)`` — the checksum of :func:`ticks_checksum` over the stored rows of that hour."""
    return (
        "SELECT date_trunc('hour', t.ts) AS unit_start, count(*) AS rows, "
        f"sum({row_checksum_sql('t')}) % {MOD} AS checksum "
        "FROM ticks t WHERE t.instrument = $1 AND t.ts >= $2 AND t.ts < $3 "
        "GROUP BY 1 ORDER BY 1"
    )
