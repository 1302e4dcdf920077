"""The instrument registry: what the sources call an instrument and how its prices scale.

Built from the Dukascopy JSON API's ``instruments`` response (``../shared/docs/dukascopy.md``
§3.4). Canonical names are the familiar upper-case symbols without separators (``EURUSD``,
``USA500IDXUSD``), which are also the legacy datafeed's file names; the JSON API's codes
(``EUR-USD``, ``USA500.IDX-USD``) map to them.

Price scales (decimals of a point):
* JSON API: ``priceScale``; each response's ``multiplier`` is authoritative when decoding.
* Legacy ``.bi5``: the files carry no scale. The legacy metadata's factor was ``10 / pipValue``
  (a point is a tenth of a pip, §2.6), so the scale is ``round(log10(10 / pipValue))``; that
  reproduces the legacy factor for 1483 of 1486 instruments. The three others keep their legacy
  value in :data:`BI5_SCALE_EXCEPTIONS`; operators add more with ``TICKPIPE_BI5_SCALE_OVERRIDES``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tickpipe_shared.instruments.classes import asset_class_of_group

#: Instruments whose legacy .bi5 scale differs from the one derived from today's pipValue.
BI5_SCALE_EXCEPTIONS: Mapping[str, int] = {"AEDHUF": 5, "AUDCNH": 6, "EURTHB": 3}

_NON_ALNUM = re.compile(r"[^A-Za-z0-9]")


class UnknownInstrumentError(LookupError):
    """An instrument name that no source knows; the message suggests close matches."""


def canonical_name(code: str) -> str:
    """``"EUR-USD"``, ``"eur/usd"`` → ``"EURUSD"``; ``"USA500.IDX-USD"`` → ``"USA500IDXUSD"``."""
    return _NON_ALNUM.sub("", code).upper()


@dataclass(frozen=True, slots=True)
class Instrument:
    """One instrument.

    ``name``: canonical symbol. ``json_code``: JSON API code. ``bi5_symbol``: legacy datafeed
    folder. ``price_scale``: decimals of a JSON API point. ``bi5_scale``: decimals of a .bi5
    point. ``pip_value``: price units per pip.
    """

    name: str
    json_code: str
    bi5_symbol: str
    price_scale: int
    bi5_scale: int
    pip_value: float | None
    description: str = ""
    asset_class: str = ""

    def code_for(self, source: str) -> str:
        """The instrument's code at ``source``: the legacy datafeed folder for
        ``dukascopy-bi5``, the JSON API code for ``dukascopy-json``."""
        return self.bi5_symbol if source == "dukascopy-bi5" else self.json_code

    def scale_for(self, source: str) -> int:
        """Price scale of the payloads of ``source`` (``dukascopy-bi5`` or ``dukascopy-json``)."""
        return self.bi5_scale if source == "dukascopy-bi5" else self.price_scale


def _scale_from_pip(pip_value: float | None) -> int | None:
    if not pip_value or pip_value <= 0 or not math.isfinite(pip_value):
        return None
    return round(math.log10(10 / pip_value))


def _group_classes(groups: Any) -> dict[Any, str]:
    """Group id → asset class, walking up ``parentId`` (stocks sit in per-country groups)."""
    if not isinstance(groups, list):
        return {}
    by_id = {g.get("id"): g for g in groups if isinstance(g, dict)}
    out: dict[Any, str] = {}
    for gid, group in by_id.items():
        seen: set[Any] = set()
        cls = ""
        g: dict[Any, Any] | None = group
        while g is not None and g.get("id") not in seen and not cls:
            seen.add(g.get("id"))
            cls = asset_class_of_group(str(g.get("code") or ""))
            g = by_id.get(g.get("parentId"))
        out[gid] = cls
    return out


class InstrumentRegistry:
    """Instruments by canonical name; look them up with any spelling of their name or code."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_name = {i.name: i for i in instruments}

    def __len__(self) -> int:
        return len(self._by_name)

    @classmethod
    def from_instruments_response(
        cls, data: Mapping[str, Any], bi5_scale_overrides: Mapping[str, int] | None = None
    ) -> InstrumentRegistry:
        """Build from the JSON API ``instruments`` response body (parsed).

        Instruments without a usable price scale (``priceScale`` null and no ``pipValue``) are
        left out. Raises :class:`ValueError` when ``data`` has no ``instruments`` list.
        """
        items = data.get("instruments")
        if not isinstance(items, list):
            raise ValueError("instrument metadata has no 'instruments' list")
        overrides = {
            canonical_name(k): v
            for k, v in {**BI5_SCALE_EXCEPTIONS, **(bi5_scale_overrides or {})}.items()
        }
        classes = _group_classes(data.get("groups"))
        out: list[Instrument] = []
        for item in items:
            code = item.get("code")
            if not isinstance(code, str):
                continue
            pip = item.get("pipValue")
            derived = _scale_from_pip(pip)
            price_scale = item.get("priceScale")
            if price_scale is None:
                price_scale = derived if derived is not None else None
            if price_scale is None:
                continue
            name = canonical_name(code)
            bi5_scale = overrides.get(name, derived if derived is not None else int(price_scale))
            out.append(
                Instrument(
                    name=name,
                    json_code=code,
                    bi5_symbol=name,
                    price_scale=int(price_scale),
                    bi5_scale=int(bi5_scale),
                    pip_value=float(pip) if pip else None,
                    description=str(item.get("description") or ""),
                    asset_class=classes.get(item.get("groupId"), ""),
                )
            )
        return cls(out)

    def get(self, name: str) -> Instrument:
        """The instrument called ``name`` in any spelling (``EURUSD``, ``EUR-USD``, ``eur/usd``).

        Raises :class:`UnknownInstrumentError` naming close matches.
        """
        key = canonical_name(name)
        found = self._by_name.get(key)
        if found is None:
            close = difflib.get_close_matches(key, self._by_name.keys(), n=3, cutoff=0.75)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownInstrumentError(
                f"unknown instrument {name!r}: not among the {len(self)} instruments "
                f"the source lists{hint}"
            )
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_name(name) in self._by_name
