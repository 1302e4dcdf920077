"""Synthetic ticks for volume runs: the generator (:mod:`.ticks`) and the per-unit checksum of
stored rows (:mod:`.checksum`), shared by the fetcher's ``synthetic`` source, bench and tests."""
