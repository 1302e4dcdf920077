-- tickpipe schema version 7: the continuous-aggregate windows the writer still has to refresh.
-- Plain SQL on a plain table, the same on PostgreSQL and TimescaleDB (no variant file); only
-- the TimescaleDB writer uses it (plain views need no refresh).
--
-- The writer inserts the windows of ticks a transaction changed (aligned to whole minutes) in
-- that very transaction, and refreshes them in a background task a moment later, coalesced
-- across transactions: the refresh is off the write path, and a crash between the write and
-- the refresh leaves the windows here, to be refreshed after the restart (docs/storage.md).
CREATE TABLE IF NOT EXISTS ohlcv_pending (
    id           bigserial   PRIMARY KEY,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL CHECK (window_end > window_start),
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
