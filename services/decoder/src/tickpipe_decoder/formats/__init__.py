"""Pure numpy decoders for source payloads: bytes in, columnar :class:`Ticks`/:class:`Candles` out.

No I/O, no Kafka, no logging: every function is deterministic and raises only
:class:`~tickpipe_decoder.errors.DecodeError` for bad input.
"""

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
from tickpipe_decoder.formats.volumes import float32_to_shortest_float64, units_to_millions

__all__ = [
    "decode_bi5_candle_records",
    "decode_bi5_candles",
    "decode_bi5_tick_records",
    "decode_bi5_ticks",
    "decode_json_candles",
    "decode_json_ticks",
    "decompress_bi5",
    "float32_to_shortest_float64",
    "scale_from_multiplier",
    "units_to_millions",
]
