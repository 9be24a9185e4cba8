-- Each capsule's outcome beside its index entry, so that listings and the
-- workbench's history page need not decode every signed envelope to show
-- it. Written with the capsule, from the same decision the statement
-- records; rows sealed before this migration have none, and readers fall
-- back to the envelope for them. The vocabulary is guarded as in 0008.
ALTER TABLE capsules ADD COLUMN outcome TEXT;

CREATE TRIGGER capsules_outcome_insert BEFORE INSERT ON capsules
    WHEN NEW.outcome IS NOT NULL AND NEW.outcome NOT IN ('live', 'deployed', 'blocked', 'deploy-failed',
        'rolled-back', 'rollback-failed', 'aborted', 'interrupted', 'paused', 'unpinned', 'flags-set')
BEGIN
    SELECT RAISE(ABORT, 'capsules: unknown outcome');
END;
