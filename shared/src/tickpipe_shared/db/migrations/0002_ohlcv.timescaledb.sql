-- TimescaleDB variant of 0002 (runs right after 0002_ohlcv.sql, in the same transaction): the
-- plain views become continuous aggregates with the same names and columns, ticks get native
-- compression with a policy. Everything here is transactional (aggregates are created WITH NO
-- DATA); the part after the "tickpipe:after-commit" marker runs once the transaction committed,
-- one statement at a time, because refresh_continuous_aggregate() cannot run in a transaction.
-- Choices are explained in docs/storage.md.

DROP VIEW ohlcv_1d, ohlcv_1h, ohlcv_5m, ohlcv_1m;

-- 1m from ticks. Real-time (materialized_only = false): buckets past the refresh watermark are
-- computed from ticks at query time, so fresh ticks show at once; backfills below the watermark
-- show after a refresh of their window, which the writer runs after each commit.
CREATE MATERIALIZED VIEW ohlcv_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT instrument,
       time_bucket(INTERVAL '1 minute', ts) AS bucket,
       first(bid, ts) AS bid_open,
       max(bid) AS bid_high,
       min(bid) AS bid_low,
       last(bid, ts) AS bid_close,
       first(ask, ts) AS ask_open,
       max(ask) AS ask_high,
       min(ask) AS ask_low,
       last(ask, ts) AS ask_close,
       first((bid + ask) / 2, ts) AS mid_open,
       max((bid + ask) / 2) AS mid_high,
       min((bid + ask) / 2) AS mid_low,
       last((bid + ask) / 2, ts) AS mid_close,
       count(*) AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ticks
GROUP BY instrument, time_bucket(INTERVAL '1 minute', ts)
WITH NO DATA;

-- 5m: hierarchical, on top of ohlcv_1m (TimescaleDB >= 2.9).
CREATE MATERIALIZED VIEW ohlcv_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT instrument,
       time_bucket(INTERVAL '5 minutes', bucket) AS bucket,
       first(bid_open, bucket) AS bid_open,
       max(bid_high) AS bid_high,
       min(bid_low) AS bid_low,
       last(bid_close, bucket) AS bid_close,
       first(ask_open, bucket) AS ask_open,
       max(ask_high) AS ask_high,
       min(ask_low) AS ask_low,
       last(ask_close, bucket) AS ask_close,
       first(mid_open, bucket) AS mid_open,
       max(mid_high) AS mid_high,
       min(mid_low) AS mid_low,
       last(mid_close, bucket) AS mid_close,
       sum(tick_count)::bigint AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ohlcv_1m
GROUP BY instrument, time_bucket(INTERVAL '5 minutes', bucket)
WITH NO DATA;

-- 1h: hierarchical, on top of ohlcv_5m (TimescaleDB >= 2.9).
CREATE MATERIALIZED VIEW ohlcv_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT instrument,
       time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       first(bid_open, bucket) AS bid_open,
       max(bid_high) AS bid_high,
       min(bid_low) AS bid_low,
       last(bid_close, bucket) AS bid_close,
       first(ask_open, bucket) AS ask_open,
       max(ask_high) AS ask_high,
       min(ask_low) AS ask_low,
       last(ask_close, bucket) AS ask_close,
       first(mid_open, bucket) AS mid_open,
       max(mid_high) AS mid_high,
       min(mid_low) AS mid_low,
       last(mid_close, bucket) AS mid_close,
       sum(tick_count)::bigint AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ohlcv_5m
GROUP BY instrument, time_bucket(INTERVAL '1 hour', bucket)
WITH NO DATA;

-- 1d: hierarchical, on top of ohlcv_1h (TimescaleDB >= 2.9).
CREATE MATERIALIZED VIEW ohlcv_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT instrument,
       time_bucket(INTERVAL '1 day', bucket) AS bucket,
       first(bid_open, bucket) AS bid_open,
       max(bid_high) AS bid_high,
       min(bid_low) AS bid_low,
       last(bid_close, bucket) AS bid_close,
       first(ask_open, bucket) AS ask_open,
       max(ask_high) AS ask_high,
       min(ask_low) AS ask_low,
       last(ask_close, bucket) AS ask_close,
       first(mid_open, bucket) AS mid_open,
       max(mid_high) AS mid_high,
       min(mid_low) AS mid_low,
       last(mid_close, bucket) AS mid_close,
       sum(tick_count)::bigint AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ohlcv_1h
GROUP BY instrument, time_bucket(INTERVAL '1 day', bucket)
WITH NO DATA;

-- Chunk intervals of the aggregates' own hypertables (the default is 10 x ticks' one day): about
-- 40-50k candles per instrument and chunk for 1m/5m, fewer and larger chunks for the coarse ones
-- (one chunk per decade for 1d), so that long-range queries touch few chunks.
SELECT set_chunk_time_interval('ohlcv_1m', INTERVAL '30 days');
SELECT set_chunk_time_interval('ohlcv_5m', INTERVAL '180 days');
SELECT set_chunk_time_interval('ohlcv_1h', INTERVAL '730 days');
SELECT set_chunk_time_interval('ohlcv_1d', INTERVAL '3650 days');

-- Refresh policies: the safety net behind the writer's refresh after each commit (they catch up
-- when that refresh failed, and for writes made by anything else). start_offset NULL reaches
-- back to the first tick: a run recomputes only the buckets invalidated since the last refresh,
-- so historical backfills are covered too. buckets_per_batch 0 refreshes the window in one
-- batch: with the default of one bucket per batch, a window reaching back years is millions of
-- batches (one run over five years of 1m buckets took 48 s in an earlier WASM build of TimescaleDB). end_offset leaves
-- the open bucket to real-time aggregation. buckets_per_batch needs TimescaleDB >= 2.19.
SELECT add_continuous_aggregate_policy('ohlcv_1m', start_offset => NULL,
    end_offset => INTERVAL '1 minute', buckets_per_batch => 0,
    schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('ohlcv_5m', start_offset => NULL,
    end_offset => INTERVAL '5 minutes', buckets_per_batch => 0,
    schedule_interval => INTERVAL '10 minutes');
SELECT add_continuous_aggregate_policy('ohlcv_1h', start_offset => NULL,
    end_offset => INTERVAL '1 hour', buckets_per_batch => 0,
    schedule_interval => INTERVAL '30 minutes');
SELECT add_continuous_aggregate_policy('ohlcv_1d', start_offset => NULL,
    end_offset => INTERVAL '1 day', buckets_per_batch => 0,
    schedule_interval => INTERVAL '1 hour');

-- Compression of ticks: one compressed batch per instrument and chunk (segmentby), ticks in time
-- order inside it (orderby), which is what the range scans and the aggregates read. Chunks are
-- compressed once their day is a week old; the writer's unit replace still works on compressed
-- chunks (DELETE and COPY into compressed chunks, TimescaleDB >= 2.11), the policy recompresses.
ALTER TABLE ticks SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'instrument',
    timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('ticks', compress_after => INTERVAL '7 days');

-- tickpipe:after-commit
-- Materialise what ticks already hold (an existing database upgraded to version 2), finest first
-- since each level reads the one below. Instant on an empty database.
CALL refresh_continuous_aggregate('ohlcv_1m', NULL, NULL);
CALL refresh_continuous_aggregate('ohlcv_5m', NULL, NULL);
CALL refresh_continuous_aggregate('ohlcv_1h', NULL, NULL);
CALL refresh_continuous_aggregate('ohlcv_1d', NULL, NULL);
