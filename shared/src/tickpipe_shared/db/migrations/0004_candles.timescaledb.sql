-- TimescaleDB variant of 0004 (runs right after 0004_candles.sql, in the same transaction):
-- candles become a hypertable with 30-day chunks and native compression with a policy.
-- Choices are explained in docs/storage.md.

-- 30-day chunks: one table holds every timeframe, and 1m candles dominate it (1440 a day per
-- instrument and side): 43k of them per series and chunk, like ohlcv_1m. A Dukascopy 1m unit
-- (a day) lies in one chunk, a 1h unit (a month) in at most two; coarse series (1d: 30 candles
-- per chunk) are small whatever the interval.
SELECT create_hypertable('candles', by_range('ts', INTERVAL '30 days'), if_not_exists => TRUE);

-- One compressed batch per candle series and chunk (segmentby: every read and every unit
-- replace filters on all three), candles in time order inside it. Compressed once the chunk is a
-- week old, as ticks; the writer's unit replace still works on compressed chunks (DELETE and
-- COPY into compressed chunks, TimescaleDB >= 2.11), the policy recompresses.
ALTER TABLE candles SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'instrument, timeframe, side',
    timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('candles', compress_after => INTERVAL '7 days');
