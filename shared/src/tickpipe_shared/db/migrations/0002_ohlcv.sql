-- tickpipe schema version 2: OHLCV candles at 1m, 5m, 1h and 1d, per instrument.
--
-- Plain PostgreSQL: ohlcv_<tf> are ordinary views computing candles from ticks at query time
-- (date_bin buckets; open/close are the bid/ask/mid of the first/last tick of the bucket by ts).
-- 0002_ohlcv.timescaledb.sql replaces them with continuous aggregates of the same names and
-- columns when TimescaleDB is available, so one query text serves both (tickpipe_shared.db.ohlcv).
--
-- Columns: instrument, bucket (start, UTC), bid_/ask_/mid_ open, high, low, close (mid =
-- (bid + ask) / 2 per tick), tick_count, bid_volume and ask_volume (sums, source's unit).
-- Every stored tick counts, flagged ones included: ticks a validation rule rejects or drops
-- never reach the table, and flags only mark ticks that were kept (docs/storage.md).
-- Buckets start at multiples of their width from 2000-01-03T00:00Z, TimescaleDB's time_bucket
-- origin: minutes, hours and UTC days. Ticks sharing one timestamp are ordered arbitrarily.

CREATE OR REPLACE VIEW ohlcv_1m AS
SELECT instrument,
       date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       (array_agg(bid ORDER BY ts))[1] AS bid_open,
       max(bid) AS bid_high,
       min(bid) AS bid_low,
       (array_agg(bid ORDER BY ts DESC))[1] AS bid_close,
       (array_agg(ask ORDER BY ts))[1] AS ask_open,
       max(ask) AS ask_high,
       min(ask) AS ask_low,
       (array_agg(ask ORDER BY ts DESC))[1] AS ask_close,
       (array_agg((bid + ask) / 2 ORDER BY ts))[1] AS mid_open,
       max((bid + ask) / 2) AS mid_high,
       min((bid + ask) / 2) AS mid_low,
       (array_agg((bid + ask) / 2 ORDER BY ts DESC))[1] AS mid_close,
       count(*) AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ticks
GROUP BY instrument, date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00');

CREATE OR REPLACE VIEW ohlcv_5m AS
SELECT instrument,
       date_bin(INTERVAL '5 minutes', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       (array_agg(bid ORDER BY ts))[1] AS bid_open,
       max(bid) AS bid_high,
       min(bid) AS bid_low,
       (array_agg(bid ORDER BY ts DESC))[1] AS bid_close,
       (array_agg(ask ORDER BY ts))[1] AS ask_open,
       max(ask) AS ask_high,
       min(ask) AS ask_low,
       (array_agg(ask ORDER BY ts DESC))[1] AS ask_close,
       (array_agg((bid + ask) / 2 ORDER BY ts))[1] AS mid_open,
       max((bid + ask) / 2) AS mid_high,
       min((bid + ask) / 2) AS mid_low,
       (array_agg((bid + ask) / 2 ORDER BY ts DESC))[1] AS mid_close,
       count(*) AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ticks
GROUP BY instrument, date_bin(INTERVAL '5 minutes', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00');

CREATE OR REPLACE VIEW ohlcv_1h AS
SELECT instrument,
       date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       (array_agg(bid ORDER BY ts))[1] AS bid_open,
       max(bid) AS bid_high,
       min(bid) AS bid_low,
       (array_agg(bid ORDER BY ts DESC))[1] AS bid_close,
       (array_agg(ask ORDER BY ts))[1] AS ask_open,
       max(ask) AS ask_high,
       min(ask) AS ask_low,
       (array_agg(ask ORDER BY ts DESC))[1] AS ask_close,
       (array_agg((bid + ask) / 2 ORDER BY ts))[1] AS mid_open,
       max((bid + ask) / 2) AS mid_high,
       min((bid + ask) / 2) AS mid_low,
       (array_agg((bid + ask) / 2 ORDER BY ts DESC))[1] AS mid_close,
       count(*) AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ticks
GROUP BY instrument, date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00');

CREATE OR REPLACE VIEW ohlcv_1d AS
SELECT instrument,
       date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       (array_agg(bid ORDER BY ts))[1] AS bid_open,
       max(bid) AS bid_high,
       min(bid) AS bid_low,
       (array_agg(bid ORDER BY ts DESC))[1] AS bid_close,
       (array_agg(ask ORDER BY ts))[1] AS ask_open,
       max(ask) AS ask_high,
       min(ask) AS ask_low,
       (array_agg(ask ORDER BY ts DESC))[1] AS ask_close,
       (array_agg((bid + ask) / 2 ORDER BY ts))[1] AS mid_open,
       max((bid + ask) / 2) AS mid_high,
       min((bid + ask) / 2) AS mid_low,
       (array_agg((bid + ask) / 2 ORDER BY ts DESC))[1] AS mid_close,
       count(*) AS tick_count,
       sum(bid_volume) AS bid_volume,
       sum(ask_volume) AS ask_volume
FROM ticks
GROUP BY instrument, date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00');
