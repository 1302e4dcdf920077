"""Python client of the tickpipe Market Data API (docs/api.md)::

from tickpipe.client import Client

api = Client("http://127.0.0.1:8000", api_key="tp_…")
df = api.ticks("EURUSD", "2019-02-04T10:00Z", "2019-02-04T11:00Z")  # pandas DataFrame
"""

from tickpipe.client.client import Client
from tickpipe.client.errors import ApiError, RequestFailed

__all__ = ["ApiError", "Client", "RequestFailed"]
