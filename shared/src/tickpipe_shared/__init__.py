"""tickpipe."""
