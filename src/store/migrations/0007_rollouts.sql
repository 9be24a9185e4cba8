-- Where each rollout on a routed target is: the canary's or the A/B
-- test's state machine (JSON, times as values), its phase, and the process
-- that owns it. Any process reads it (`stella rollout status`, the
-- workbench) and, when the owner is dead, takes it over from where it
-- stood. One row per environment and target; a new rollout replaces it.
CREATE TABLE rollouts (
    environment  TEXT NOT NULL,
    target       TEXT NOT NULL,
    promotion_id INTEGER REFERENCES promotions (id),
    app          TEXT NOT NULL,
    digest       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('canary', 'ab')),
    phase        TEXT NOT NULL CHECK (phase IN ('running', 'paused', 'promoted', 'aborted', 'rolled-back', 'experiment', 'consolidated', 'failed')),
    -- The process walking it; NULL once it is over.
    owner_pid    INTEGER,
    -- How many times it was taken over from a dead owner.
    taken_over   INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (environment, target)
) STRICT;
