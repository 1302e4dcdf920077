-- tickpipe core schema, version 1. Works on plain PostgreSQL; 0001_core.timescaledb.sql adds
-- the TimescaleDB parts when the extension is available.

-- Instruments seen by the pipeline, with the price scale their points were stored with.
CREATE TABLE IF NOT EXISTS instruments (
    instrument   text PRIMARY KEY,            -- canonical symbol, e.g. EURUSD
    price_scale  smallint NOT NULL,           -- decimals of a point
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Ticks. Prices are float8 computed as points / 10^scale, which reads back as the exact
-- decimal at the instrument's scale. Volumes are in the source's unit (Dukascopy: millions).
-- flags: one bit per validation rule that flagged the tick (0 = clean).
CREATE TABLE IF NOT EXISTS ticks (
    instrument  text             NOT NULL,
    ts          timestamptz      NOT NULL,
    bid         double precision NOT NULL,
    ask         double precision NOT NULL,
    bid_volume  double precision,
    ask_volume  double precision,
    flags       smallint         NOT NULL DEFAULT 0
);
-- Serves both the writer's unit replace (instrument + time window) and range queries.
CREATE INDEX IF NOT EXISTS ticks_instrument_ts_idx ON ticks (instrument, ts);

-- The ingest log: one row per unit of work, the completeness ledger.
CREATE TABLE IF NOT EXISTS ingest_log (
    instrument      text        NOT NULL,
    kind            text        NOT NULL,          -- 'ticks'
    unit_start      timestamptz NOT NULL,
    unit_end        timestamptz NOT NULL,
    source          text        NOT NULL,          -- source of the stored version
    state           text        NOT NULL CHECK (state IN ('stored', 'empty', 'partial')),
    rows            bigint      NOT NULL,
    part_count      integer     NOT NULL,
    parts_written   integer     NOT NULL,
    payload_sha256  text        NOT NULL,          -- sha256 of the raw payload, hex
    quality         jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- validation rule -> ticks hit
    decoder_version text        NOT NULL,
    request_id      text,
    fetched_at      timestamptz NOT NULL,
    decoded_at      timestamptz NOT NULL,
    written_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, kind, unit_start)
);
