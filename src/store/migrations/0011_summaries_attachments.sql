-- A verification summary (an in-toto statement whose predicate is a SLSA
-- VSA, signed as a DSSE envelope) sealed beside each capsule that decides
-- whether a release may run in an environment, in the same transaction.
-- `result` is the summary's verificationResult.
CREATE TABLE summaries (
    capsule_id INTEGER PRIMARY KEY,
    payload_digest TEXT NOT NULL,
    result TEXT NOT NULL CHECK (result IN ('PASSED', 'FAILED')),
    envelope BLOB NOT NULL
);

-- The capsule and its summary to be attached to the image (OCI referrers
-- in its registry, or its image layout). Written `pending` with the
-- capsule, so a registry that is down loses nothing: the push is retried
-- until it is `attached`. `image` is where the app's image lived when the
-- decision was sealed.
CREATE TABLE attachments (
    capsule_id INTEGER PRIMARY KEY,
    image TEXT NOT NULL,
    insecure INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('pending', 'attached')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_attempt_at TEXT,
    attached_at TEXT,
    capsule_manifest TEXT,
    summary_manifest TEXT
);
CREATE INDEX attachments_pending ON attachments (capsule_id) WHERE state = 'pending';
