"""tickpipe tracker: per-request progress and completion events (faust, off the data path)."""
