-- tickpipe schema version 3: the ingest log records every unit's outcome, failures included.
-- Plain SQL on a plain table: the same on PostgreSQL and TimescaleDB (no variant file).
--
-- States (docs/storage.md, "The ingest log"):
--   stored        the unit's ticks are in `ticks` (rows > 0)
--   empty         the source had no ticks for the unit, and that is plausible
--   suspect-empty the source had no ticks although the market was open (set by the fetcher)
--   partial       some of the unit's parts are written, not all yet
--   failed        a stage gave up on the unit (failure_stage, failure_reason, attempts)
-- A failed row has no payload, decoder or fetch/decode times: those columns become nullable.
-- failure_* keep the last failure recorded for the unit, also once a later write stored it.

ALTER TABLE ingest_log DROP CONSTRAINT IF EXISTS ingest_log_state_check;
ALTER TABLE ingest_log ADD CONSTRAINT ingest_log_state_check
    CHECK (state IN ('stored', 'empty', 'suspect-empty', 'partial', 'failed'));

ALTER TABLE ingest_log
    ADD COLUMN IF NOT EXISTS failure_stage  text,     -- stage that gave up: fetcher, decoder, …
    ADD COLUMN IF NOT EXISTS failure_reason text,     -- its reason, for a human
    ADD COLUMN IF NOT EXISTS attempts       integer;  -- attempts made (downloads) or 1

ALTER TABLE ingest_log
    ALTER COLUMN payload_sha256  DROP NOT NULL,
    ALTER COLUMN decoder_version DROP NOT NULL,
    ALTER COLUMN fetched_at      DROP NOT NULL,
    ALTER COLUMN decoded_at      DROP NOT NULL;
