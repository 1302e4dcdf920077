-- tickpipe schema version 5: the Market Data API's keys and the fetch requests it published.
-- Works on plain PostgreSQL and TimescaleDB alike (no TimescaleDB part).

-- API keys. Only a hash of each key is stored: a key is "tp_<key_id>_<secret>" with a random
-- 128-bit secret; key_id (public, 16 hex) finds the row, key_hash (sha256 of the whole key, hex)
-- is what is compared, in constant time (tickpipe_shared.db.api_keys). The key itself is shown
-- once, when it is created, and never stored or logged.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      text        PRIMARY KEY,
    key_hash    text        NOT NULL,
    name        text        NOT NULL,
    scopes      text[]      NOT NULL CHECK (scopes <@ ARRAY['read', 'request', 'admin']::text[]),
    rate_limit  double precision CHECK (rate_limit IS NULL OR rate_limit > 0),  -- requests/s
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at  timestamptz
);

-- Fetch requests published through the API (POST /v1/requests): which key asked for what, and
-- the request's existence for GET /v1/requests/{id} before the tracker has said anything.
CREATE TABLE IF NOT EXISTS api_requests (
    request_id  text        PRIMARY KEY,
    key_id      text,                       -- NULL when auth is off (local stack)
    body        jsonb       NOT NULL,       -- the fetch request as published
    created_at  timestamptz NOT NULL DEFAULT now()
);
