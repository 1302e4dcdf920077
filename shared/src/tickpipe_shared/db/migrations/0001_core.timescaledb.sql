-- TimescaleDB variant of 0001: ticks become a hypertable with one-day chunks (a busy FX pair
-- has ~150k ticks a day: chunks of a few MB that compress well and drop cleanly).
SELECT create_hypertable('ticks', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE);
