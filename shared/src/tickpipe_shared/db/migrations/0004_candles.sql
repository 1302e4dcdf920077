-- tickpipe schema version 4: source candles, and instruments with their asset class and their
-- codes at each source. Works on plain PostgreSQL; 0004_candles.timescaledb.sql adds the
-- TimescaleDB parts (hypertable, compression) when the extension is available.

-- Candles as the sources serve them (Dukascopy BID/ASK files, Deriv mid candles, Polygon trade
-- aggregates), one row per candle; not to be confused with ohlcv_<tf>, computed from ticks.
-- Prices are float8 computed as points / 10^scale, which reads back as the exact decimal at the
-- instrument's scale, like ticks. The unit replace deletes a unit's window
-- (instrument, timeframe, side, ts in [unit_start, unit_end)): the primary key's index serves
-- it as one range, and so it does range reads of one candle series.
CREATE TABLE IF NOT EXISTS candles (
    instrument  text             NOT NULL,  -- canonical symbol, e.g. EURUSD
    timeframe   text             NOT NULL,  -- '1m', '1h', '1d', '1w', '1mo' (kinds.Timeframe)
    side        text             NOT NULL CHECK (side IN ('bid', 'ask', 'mid', 'trade')),
    ts          timestamptz      NOT NULL,  -- candle start
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      double precision,           -- source's unit; NULL: the source gives none
    flags       smallint         NOT NULL DEFAULT 0,  -- one bit per validation rule (0 = clean)
    PRIMARY KEY (instrument, timeframe, side, ts)
);

-- Instruments: what each source calls them (source -> code, e.g.
-- {"dukascopy-json": "EUR-USD", "dukascopy-bi5": "EURUSD"}) and their asset class (fx, metal,
-- index, stock, crypto, commodity, synthetic, bond, etf; NULL while unknown).
ALTER TABLE instruments
    ADD COLUMN IF NOT EXISTS asset_class  text,
    ADD COLUMN IF NOT EXISTS source_codes jsonb NOT NULL DEFAULT '{}'::jsonb;
