-- The first schema. Later issues fill these tables; their shape is set
-- here so that every later change is an additive migration.

CREATE TABLE apps (
    name        TEXT PRIMARY KEY,
    image       TEXT NOT NULL
) STRICT;

-- Every tag → digest resolution, in order. A tag that moved keeps its old
-- rows: history is never rewritten.
CREATE TABLE releases (
    id          INTEGER PRIMARY KEY,
    app         TEXT,
    reference   TEXT NOT NULL,
    tag         TEXT,
    digest      TEXT NOT NULL CHECK (digest GLOB 'sha256:*' AND length(digest) = 71),
    resolved_at TEXT NOT NULL
) STRICT;
CREATE INDEX releases_by_app ON releases (app, id);
CREATE INDEX releases_by_digest ON releases (digest);

CREATE TABLE environments (
    name        TEXT PRIMARY KEY,
    from_env    TEXT,
    position    INTEGER NOT NULL
) STRICT;

CREATE TABLE promotions (
    id           INTEGER PRIMARY KEY,
    app          TEXT NOT NULL,
    digest       TEXT NOT NULL,
    tag          TEXT,
    environment  TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    state        TEXT NOT NULL,
    outcome      TEXT,
    created_at   TEXT NOT NULL,
    finished_at  TEXT
) STRICT;
CREATE INDEX promotions_by_env ON promotions (environment, id);

CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    promotion_id INTEGER NOT NULL REFERENCES promotions (id),
    state        TEXT NOT NULL,
    pid          INTEGER,
    started_at   TEXT NOT NULL,
    finished_at  TEXT
) STRICT;

CREATE TABLE steps (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES runs (id),
    step         TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 1,
    started_at   TEXT,
    finished_at  TEXT,
    log_digest   TEXT,
    UNIQUE (run_id, step, attempt)
) STRICT;

CREATE TABLE evidence (
    digest      TEXT PRIMARY KEY,
    media_type  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    added_at    TEXT NOT NULL
) STRICT;

-- Evidence attached to a release digest is reused by every promotion of it.
CREATE TABLE evidence_links (
    subject_digest  TEXT NOT NULL,
    evidence_digest TEXT NOT NULL REFERENCES evidence (digest),
    PRIMARY KEY (subject_digest, evidence_digest)
) STRICT;

CREATE TABLE capsules (
    id             INTEGER PRIMARY KEY,
    environment    TEXT NOT NULL,
    app            TEXT NOT NULL,
    digest         TEXT NOT NULL,
    action         TEXT NOT NULL,
    decision       TEXT NOT NULL,
    promotion_id   INTEGER REFERENCES promotions (id),
    payload_digest TEXT NOT NULL UNIQUE,
    previous       TEXT,
    envelope       BLOB NOT NULL,
    sealed_at      TEXT NOT NULL
) STRICT;
CREATE INDEX capsules_by_env ON capsules (environment, id);

-- One promotion per environment at a time.
CREATE TABLE locks (
    environment  TEXT PRIMARY KEY,
    promotion_id INTEGER NOT NULL REFERENCES promotions (id),
    holder       TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    acquired_at  TEXT NOT NULL
) STRICT;
