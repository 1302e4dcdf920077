-- TimescaleDB variant of 0006 (the base file runs at the "tickpipe:base" marker, all in one
-- transaction): a column of a hypertable with compression cannot change type, nor one that
-- continuous aggregates read. So the aggregates are dropped (with their refresh policies), every
-- compressed chunk of ticks is decompressed and compression switched off; the base file converts
-- the columns; then compression, its policy, the aggregates over points and their policies come
-- back as 0002 made them (docs/storage.md). After the commit the chunks older than the policy's
-- 7 days are compressed again and the aggregates materialised by the policies' first runs.
-- On a large database this rewrites every tick once: plan the upgrade (docs/storage.md).

-- Policies first: their jobs start right after they are created (a fresh database runs 0002
-- a moment before), and a job running while its aggregate is dropped fails the DROP with
-- "tuple concurrently deleted". Removing a job waits for a running one to finish.
SELECT remove_continuous_aggregate_policy('ohlcv_1d', if_exists => TRUE);
SELECT remove_continuous_aggregate_policy('ohlcv_1h', if_exists => TRUE);
SELECT remove_continuous_aggregate_policy('ohlcv_5m', if_exists => TRUE);
SELECT remove_continuous_aggregate_policy('ohlcv_1m', if_exists => TRUE);
SELECT remove_compression_policy('ticks', if_exists => TRUE);
DROP MATERIALIZED VIEW ohlcv_1d;
DROP MATERIALIZED VIEW ohlcv_1h;
DROP MATERIALIZED VIEW ohlcv_5m;
DROP MATERIALIZED VIEW ohlcv_1m;
SELECT decompress_chunk(c, if_compressed => TRUE) FROM show_chunks('ticks') AS c;
ALTER TABLE ticks SET (timescaledb.compress = false);

-- tickpipe:base

DROP VIEW ohlcv_1d, ohlcv_1h, ohlcv_5m, ohlcv_1m;

-- Continuous aggregates over points, hierarchical and real-time as in 0002.
CREATE MATERIALIZED VIEW ohlcv_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT instrument,
       time_bucket(INTERVAL '1 minute', ts) AS bucket,
       first(bid_points, ts) AS bid_open_points,
       max(bid_points) AS bid_high_points,
       min(bid_points) AS bid_low_points,
       last(bid_points, ts) AS bid_close_points,
       first(ask_points, ts) AS ask_open_points,
       max(ask_points) AS ask_high_points,
       min(ask_points) AS ask_low_points,
       last(ask_points, ts) AS ask_close_points,
       first((bid_points + ask_points)::float8 / 2, ts) AS mid_open_points,
       max((bid_points + ask_points)::float8 / 2) AS mid_high_points,
       min((bid_points + ask_points)::float8 / 2) AS mid_low_points,
       last((bid_points + ask_points)::float8 / 2, ts) AS mid_close_points,
       count(*) AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ticks
GROUP BY instrument, time_bucket(INTERVAL '1 minute', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW ohlcv_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT instrument,
       time_bucket(INTERVAL '5 minutes', bucket) AS bucket,
       first(bid_open_points, bucket) AS bid_open_points,
       max(bid_high_points) AS bid_high_points,
       min(bid_low_points) AS bid_low_points,
       last(bid_close_points, bucket) AS bid_close_points,
       first(ask_open_points, bucket) AS ask_open_points,
       max(ask_high_points) AS ask_high_points,
       min(ask_low_points) AS ask_low_points,
       last(ask_close_points, bucket) AS ask_close_points,
       first(mid_open_points, bucket) AS mid_open_points,
       max(mid_high_points) AS mid_high_points,
       min(mid_low_points) AS mid_low_points,
       last(mid_close_points, bucket) AS mid_close_points,
       sum(tick_count)::bigint AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ohlcv_1m
GROUP BY instrument, time_bucket(INTERVAL '5 minutes', bucket)
WITH NO DATA;

CREATE MATERIALIZED VIEW ohlcv_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT instrument,
       time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       first(bid_open_points, bucket) AS bid_open_points,
       max(bid_high_points) AS bid_high_points,
       min(bid_low_points) AS bid_low_points,
       last(bid_close_points, bucket) AS bid_close_points,
       first(ask_open_points, bucket) AS ask_open_points,
       max(ask_high_points) AS ask_high_points,
       min(ask_low_points) AS ask_low_points,
       last(ask_close_points, bucket) AS ask_close_points,
       first(mid_open_points, bucket) AS mid_open_points,
       max(mid_high_points) AS mid_high_points,
       min(mid_low_points) AS mid_low_points,
       last(mid_close_points, bucket) AS mid_close_points,
       sum(tick_count)::bigint AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ohlcv_5m
GROUP BY instrument, time_bucket(INTERVAL '1 hour', bucket)
WITH NO DATA;

CREATE MATERIALIZED VIEW ohlcv_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT instrument,
       time_bucket(INTERVAL '1 day', bucket) AS bucket,
       first(bid_open_points, bucket) AS bid_open_points,
       max(bid_high_points) AS bid_high_points,
       min(bid_low_points) AS bid_low_points,
       last(bid_close_points, bucket) AS bid_close_points,
       first(ask_open_points, bucket) AS ask_open_points,
       max(ask_high_points) AS ask_high_points,
       min(ask_low_points) AS ask_low_points,
       last(ask_close_points, bucket) AS ask_close_points,
       first(mid_open_points, bucket) AS mid_open_points,
       max(mid_high_points) AS mid_high_points,
       min(mid_low_points) AS mid_low_points,
       last(mid_close_points, bucket) AS mid_close_points,
       sum(tick_count)::bigint AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ohlcv_1h
GROUP BY instrument, time_bucket(INTERVAL '1 day', bucket)
WITH NO DATA;

SELECT set_chunk_time_interval('ohlcv_1m', INTERVAL '30 days');
SELECT set_chunk_time_interval('ohlcv_5m', INTERVAL '180 days');
SELECT set_chunk_time_interval('ohlcv_1h', INTERVAL '730 days');
SELECT set_chunk_time_interval('ohlcv_1d', INTERVAL '3650 days');

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

ALTER TABLE ticks SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'instrument',
    timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('ticks', compress_after => INTERVAL '7 days');

-- No after-commit part: the compression policy recompresses the chunks older than 7 days and
-- the refresh policies materialise the aggregates from the converted ticks at their first runs,
-- which start at once (a new job's initial start is now); doing either here would race them.
