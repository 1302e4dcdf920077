"""The sources the fetcher downloads from; one module each, all behind :class:`Source`."""

from tickpipe_fetcher.sources.base import Answer, Outcome, Requests, Source
from tickpipe_fetcher.sources.deriv import DerivSource
from tickpipe_fetcher.sources.dukascopy_bi5 import DukascopyBi5
from tickpipe_fetcher.sources.dukascopy_json import DukascopyJson
from tickpipe_fetcher.sources.paced import PacedSource
from tickpipe_fetcher.sources.polygon import PolygonSource
from tickpipe_fetcher.sources.synthetic import SyntheticSource

__all__ = [
    "Answer",
    "DerivSource",
    "DukascopyBi5",
    "DukascopyJson",
    "Outcome",
    "PacedSource",
    "PolygonSource",
    "Requests",
    "Source",
    "SyntheticSource",
]
