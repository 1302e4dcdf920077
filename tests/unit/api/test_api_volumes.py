"""Volume sums leave the API without float8 summation noise; source volumes unchanged."""

from __future__ import annotations

import numpy as np
from tickpipe_api.batches import canonical_volumes


def test_summation_noise_is_dropped_and_source_volumes_kept() -> None:
    sums = np.array([6146.840000000001, 5904.430000000002, 634.8599999999999])
    assert canonical_volumes(sums).tolist() == [6146.84, 5904.43, 634.86]
    source = np.array([2.06, 0.0075, 1.25e-05, 123456789.123, 0.5])
    assert canonical_volumes(source).tolist() == source.tolist()


def test_nulls_zeros_and_shape_are_kept() -> None:
    values = np.array([np.nan, 0.0, -1.2500000000000002, np.inf])
    out = canonical_volumes(values)
    assert out.shape == values.shape and out.dtype == np.float64
    assert np.isnan(out[0]) and out[1] == 0.0 and out[2] == -1.25 and out[3] == np.inf
