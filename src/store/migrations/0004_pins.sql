-- A deliberate rollback pins its app in its environment until someone
-- unpins it: nothing promotes over it meanwhile. The row is written (or
-- deleted) in the same transaction as the capsule that pins (or unpins).
CREATE TABLE pins (
    environment TEXT NOT NULL,
    app         TEXT NOT NULL,
    digest      TEXT NOT NULL,
    capsule_id  INTEGER NOT NULL REFERENCES capsules (id),
    pinned_by   TEXT NOT NULL,
    pinned_at   TEXT NOT NULL,
    PRIMARY KEY (environment, app)
) STRICT;
