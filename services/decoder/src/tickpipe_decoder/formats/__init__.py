"""Pure decoders for source payloads: bytes in, columnar :class:`Ticks`/:class:`Candles` out.

No I/O, no Kafka, no logging: every function is deterministic and raises only
:class:`~tickpipe_decoder.errors.DecodeError` for bad input. One module per source format:
``dukascopy_bi5`` (legacy ``.bi5`` files), ``dukascopy_json`` (JSON API), ``deriv`` (Deriv
``ticks_history`` replies), ``polygon`` (Polygon aggregates); ``pages`` holds what the two
page-array formats share, ``volumes`` the decimal-exact volume conversions.
"""

from tickpipe_decoder.formats.deriv import decode_deriv_candles, decode_deriv_ticks
from tickpipe_decoder.formats.dukascopy_bi5 import (
    decode_bi5_candle_records,
    decode_bi5_candles,
    decode_bi5_tick_records,
    decode_bi5_ticks,
    decompress_bi5,
)
from tickpipe_decoder.formats.dukascopy_json import (
    decode_json_candles,
    decode_json_ticks,
    scale_from_multiplier,
)
from tickpipe_decoder.formats.polygon import PolygonAggs, decode_polygon_aggs, volume_unit_for
from tickpipe_decoder.formats.volumes import float32_to_shortest_float64, units_to_millions

__all__ = [
    "PolygonAggs",
    "decode_bi5_candle_records",
    "decode_bi5_candles",
    "decode_bi5_tick_records",
    "decode_bi5_ticks",
    "decode_deriv_candles",
    "decode_deriv_ticks",
    "decode_json_candles",
    "decode_json_ticks",
    "decode_polygon_aggs",
    "decompress_bi5",
    "float32_to_shortest_float64",
    "scale_from_multiplier",
    "units_to_millions",
    "volume_unit_for",
]
