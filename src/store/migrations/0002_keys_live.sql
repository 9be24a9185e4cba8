-- Keys the workspace knows (public halves; private keys stay in files).
CREATE TABLE keys (
    name       TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    keyid      TEXT NOT NULL UNIQUE,
    public_pem TEXT NOT NULL,
    private    INTEGER NOT NULL CHECK (private IN (0, 1)),
    added_at   TEXT NOT NULL
) STRICT;

-- What became live where, and when: the latest row per (environment, app)
-- at or before a clock is what was live then.
CREATE TABLE live (
    id           INTEGER PRIMARY KEY,
    environment  TEXT NOT NULL,
    app          TEXT NOT NULL,
    digest       TEXT NOT NULL,
    since        TEXT NOT NULL,
    promotion_id INTEGER REFERENCES promotions (id),
    source       TEXT NOT NULL
) STRICT;
CREATE INDEX live_by_env_app ON live (environment, app, since, id);
