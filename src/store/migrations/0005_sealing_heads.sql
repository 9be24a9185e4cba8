-- Which keys may seal capsules: the workspace's sealing key, and earlier
-- ones after a rotation (`retired_at` set: they still verify what they
-- sealed, they seal nothing new). Approvers' keys are never here.
CREATE TABLE sealing_keys (
    keyid      TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    public_pem TEXT NOT NULL,
    added_at   TEXT NOT NULL,
    retired_at TEXT
) STRICT;
INSERT INTO sealing_keys (keyid, name, public_pem, added_at)
    SELECT keyid, name, public_pem, added_at FROM keys WHERE name = 'workspace' AND private = 1;
-- The sealing key is made (by `stella init`, or on the first decision of
-- an older workspace) under the name `workspace`, its private half here.
CREATE TRIGGER sealing_key_made AFTER INSERT ON keys
    WHEN NEW.name = 'workspace' AND NEW.private = 1
BEGIN
    INSERT OR IGNORE INTO sealing_keys (keyid, name, public_pem, added_at)
        VALUES (NEW.keyid, NEW.name, NEW.public_pem, NEW.added_at);
END;

-- The end of each environment's chain: a statement signed with the
-- sealing key naming the newest capsule, rewritten in the transaction
-- that seals each capsule. Deleting the newest capsule leaves a head
-- naming a capsule that is not there.
CREATE TABLE chain_heads (
    environment    TEXT PRIMARY KEY,
    payload_digest TEXT NOT NULL,
    envelope       BLOB NOT NULL
) STRICT;
