-- tickpipe schema version 8: every change of the ledger is announced on the channel
-- tickpipe_ledger. Works on plain PostgreSQL and TimescaleDB alike (no TimescaleDB part).
--
-- Why: answers derived from ledger state (the Market Data API's cached answers and their ETags)
-- stay valid until a unit they cover is written again. A reader that LISTENs learns of that
-- write when it commits, instead of asking the database on every request.
--
-- Payload (JSON text): {"instrument": "EURUSD", "start": <ms>, "end": <ms>} for a unit's row of
-- ingest_log (epoch milliseconds, UTC), {"instrument": "EURUSD"} for a row of instruments (its
-- price scale), {"all": true} for a TRUNCATE. Notifications are sent at commit, deduplicated per
-- transaction by PostgreSQL, and lost when nobody listens (listeners treat a reconnect as "all
-- changed").

CREATE OR REPLACE FUNCTION tickpipe_notify_unit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('tickpipe_ledger', json_build_object(
            'instrument', OLD.instrument,
            'start', (extract(epoch FROM OLD.unit_start) * 1000)::bigint,
            'end', (extract(epoch FROM OLD.unit_end) * 1000)::bigint)::text);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('tickpipe_ledger', json_build_object(
            'instrument', NEW.instrument,
            'start', (extract(epoch FROM NEW.unit_start) * 1000)::bigint,
            'end', (extract(epoch FROM NEW.unit_end) * 1000)::bigint)::text);
    END IF;
    RETURN NULL;
END
$$;

-- Only what answers depend on: an instrument appearing or going, or its price scale changing (the
-- writer touches updated_at on every batch; that must not invalidate anything).
CREATE OR REPLACE FUNCTION tickpipe_notify_instrument() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.instrument = NEW.instrument
       AND OLD.price_scale IS NOT DISTINCT FROM NEW.price_scale THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('tickpipe_ledger', json_build_object('instrument', OLD.instrument)::text);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('tickpipe_ledger', json_build_object('instrument', NEW.instrument)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION tickpipe_notify_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tickpipe_ledger', '{"all": true}');
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER ingest_log_notify
    AFTER INSERT OR UPDATE OR DELETE ON ingest_log
    FOR EACH ROW EXECUTE FUNCTION tickpipe_notify_unit();
CREATE OR REPLACE TRIGGER ingest_log_notify_truncate
    AFTER TRUNCATE ON ingest_log
    FOR EACH STATEMENT EXECUTE FUNCTION tickpipe_notify_all();
CREATE OR REPLACE TRIGGER instruments_notify
    AFTER INSERT OR UPDATE OR DELETE ON instruments
    FOR EACH ROW EXECUTE FUNCTION tickpipe_notify_instrument();
CREATE OR REPLACE TRIGGER instruments_notify_truncate
    AFTER TRUNCATE ON instruments
    FOR EACH STATEMENT EXECUTE FUNCTION tickpipe_notify_all();
