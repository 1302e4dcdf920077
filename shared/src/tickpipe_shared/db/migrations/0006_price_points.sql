-- tickpipe schema version 6: tick prices stored as integer points (price = points / 10^scale,
-- instruments.price_scale), so that they are exact by construction and compress as integers:
-- TimescaleDB compresses bigint columns with delta-of-delta + simple-8b (a few bits per tick
-- for a quote that moves by a few points), float8 columns only with Gorilla XOR. Works on plain
-- PostgreSQL; 0006_price_points.timescaledb.sql wraps it for TimescaleDB (continuous aggregates
-- dropped and recreated, compressed chunks decompressed and compressed again).
--
-- ticks.bid / ask (float8 prices) become ticks.bid_points / ask_points (bigint points); the
-- OHLCV views become candles in points: <side>_open_points … <side>_close_points, bid and ask
-- bigint, mid = (bid_points + ask_points) / 2 per tick as float8 (a multiple of 0.5 point,
-- exact). An existing database is converted in place: round(price * 10^scale) is the point
-- the writer divided (the float8 was correctly rounded from it, so the product is within an
-- ulp of that integer). A tick of an instrument without a row in `instruments` cannot be
-- converted and fails the migration with a NOT NULL violation (the writer always writes both).

DROP VIEW IF EXISTS ohlcv_1d, ohlcv_1h, ohlcv_5m, ohlcv_1m;

CREATE FUNCTION pg_temp.tickpipe_points(price double precision, name text) RETURNS bigint
LANGUAGE sql STABLE AS
$$ SELECT round(price * 10::double precision ^ i.price_scale)::bigint
   FROM instruments i WHERE i.instrument = name $$;

ALTER TABLE ticks
    ALTER COLUMN bid TYPE bigint USING pg_temp.tickpipe_points(bid, instrument),
    ALTER COLUMN ask TYPE bigint USING pg_temp.tickpipe_points(ask, instrument);
ALTER TABLE ticks RENAME COLUMN bid TO bid_points;
ALTER TABLE ticks RENAME COLUMN ask TO ask_points;

-- The views of 0002 over points (same buckets, same rules; see 0002_ohlcv.sql).
CREATE VIEW ohlcv_1m AS
SELECT instrument,
       date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       (array_agg(bid_points ORDER BY ts))[1] AS bid_open_points,
       max(bid_points) AS bid_high_points,
       min(bid_points) AS bid_low_points,
       (array_agg(bid_points ORDER BY ts DESC))[1] AS bid_close_points,
       (array_agg(ask_points ORDER BY ts))[1] AS ask_open_points,
       max(ask_points) AS ask_high_points,
       min(ask_points) AS ask_low_points,
       (array_agg(ask_points ORDER BY ts DESC))[1] AS ask_close_points,
       (array_agg((bid_points + ask_points)::float8 / 2 ORDER BY ts))[1] AS mid_open_points,
       max((bid_points + ask_points)::float8 / 2) AS mid_high_points,
       min((bid_points + ask_points)::float8 / 2) AS mid_low_points,
       (array_agg((bid_points + ask_points)::float8 / 2 ORDER BY ts DESC))[1] AS mid_close_points,
       count(*) AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ticks
GROUP BY instrument, date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00');

CREATE VIEW ohlcv_5m AS
SELECT instrument,
       date_bin(INTERVAL '5 minutes', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       (array_agg(bid_points ORDER BY ts))[1] AS bid_open_points,
       max(bid_points) AS bid_high_points,
       min(bid_points) AS bid_low_points,
       (array_agg(bid_points ORDER BY ts DESC))[1] AS bid_close_points,
       (array_agg(ask_points ORDER BY ts))[1] AS ask_open_points,
       max(ask_points) AS ask_high_points,
       min(ask_points) AS ask_low_points,
       (array_agg(ask_points ORDER BY ts DESC))[1] AS ask_close_points,
       (array_agg((bid_points + ask_points)::float8 / 2 ORDER BY ts))[1] AS mid_open_points,
       max((bid_points + ask_points)::float8 / 2) AS mid_high_points,
       min((bid_points + ask_points)::float8 / 2) AS mid_low_points,
       (array_agg((bid_points + ask_points)::float8 / 2 ORDER BY ts DESC))[1] AS mid_close_points,
       count(*) AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ticks
GROUP BY instrument, date_bin(INTERVAL '5 minutes', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00');

CREATE VIEW ohlcv_1h AS
SELECT instrument,
       date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       (array_agg(bid_points ORDER BY ts))[1] AS bid_open_points,
       max(bid_points) AS bid_high_points,
       min(bid_points) AS bid_low_points,
       (array_agg(bid_points ORDER BY ts DESC))[1] AS bid_close_points,
       (array_agg(ask_points ORDER BY ts))[1] AS ask_open_points,
       max(ask_points) AS ask_high_points,
       min(ask_points) AS ask_low_points,
       (array_agg(ask_points ORDER BY ts DESC))[1] AS ask_close_points,
       (array_agg((bid_points + ask_points)::float8 / 2 ORDER BY ts))[1] AS mid_open_points,
       max((bid_points + ask_points)::float8 / 2) AS mid_high_points,
       min((bid_points + ask_points)::float8 / 2) AS mid_low_points,
       (array_agg((bid_points + ask_points)::float8 / 2 ORDER BY ts DESC))[1] AS mid_close_points,
       count(*) AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ticks
GROUP BY instrument, date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00');

CREATE VIEW ohlcv_1d AS
SELECT instrument,
       date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       (array_agg(bid_points ORDER BY ts))[1] AS bid_open_points,
       max(bid_points) AS bid_high_points,
       min(bid_points) AS bid_low_points,
       (array_agg(bid_points ORDER BY ts DESC))[1] AS bid_close_points,
       (array_agg(ask_points ORDER BY ts))[1] AS ask_open_points,
       max(ask_points) AS ask_high_points,
       min(ask_points) AS ask_low_points,
       (array_agg(ask_points ORDER BY ts DESC))[1] AS ask_close_points,
       (array_agg((bid_points + ask_points)::float8 / 2 ORDER BY ts))[1] AS mid_open_points,
       max((bid_points + ask_points)::float8 / 2) AS mid_high_points,
       min((bid_points + ask_points)::float8 / 2) AS mid_low_points,
       (array_agg((bid_points + ask_points)::float8 / 2 ORDER BY ts DESC))[1] AS mid_close_points,
       count(*) AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ticks
GROUP BY instrument, date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00');
