-- An operator's hand on work under way, from any process: pause, resume,
-- promote-now or abort, of a promotion's workflow run (`subject` 'run',
-- `promotion_id` set) or of a rollout on an environment's routed targets
-- (`subject` 'rollout', `environment` set). Rows are never deleted: each
-- is answered once, with the capsule it produced or the error it met.
CREATE TABLE operator_requests (
    id           INTEGER PRIMARY KEY,
    subject      TEXT NOT NULL CHECK (subject IN ('run', 'rollout')),
    environment  TEXT NOT NULL,
    promotion_id INTEGER REFERENCES promotions (id),
    request      TEXT NOT NULL CHECK (request IN ('pause', 'resume', 'promote', 'abort')),
    requested_by TEXT NOT NULL,
    -- The signed request (a DSSE envelope), when the requester had a key.
    envelope     BLOB,
    pid          INTEGER NOT NULL,
    requested_at TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    -- Who answered: the pid that acted, and whether it took the work over
    -- from a dead owner.
    answered_by  INTEGER,
    taken_over   INTEGER NOT NULL DEFAULT 0 CHECK (taken_over IN (0, 1)),
    capsule_id   INTEGER REFERENCES capsules (id),
    error        TEXT,
    answered_at  TEXT,
    CHECK ((subject = 'run') = (promotion_id IS NOT NULL))
) STRICT;
CREATE INDEX operator_requests_pending ON operator_requests (environment, state, id);
