"""The sources the fetcher downloads from; one module each, all behind :class:`Source`."""

from tickpipe_fetcher.sources.base import Outcome, Source
from tickpipe_fetcher.sources.dukascopy_bi5 import DukascopyBi5
from tickpipe_fetcher.sources.dukascopy_json import DukascopyJson

__all__ = ["DukascopyBi5", "DukascopyJson", "Outcome", "Source"]
