-- The states a promotion, a run and a step may be in are closed
-- vocabularies (`domain::state`); the store refuses any other word.
--
-- SQLite cannot add a CHECK constraint to an existing column, and
-- rebuilding `promotions`, `runs` and `steps` would mean copying tables
-- that `runs`, `steps`, `capsules`, `locks`, `pins` and
-- `operator_requests` reference by foreign key, with their indexes and
-- the sealing triggers around them. Triggers guard the same columns
-- without touching a row: every INSERT and every UPDATE of a state is
-- checked, and a word outside the vocabulary aborts the statement.
-- (`stella` reads every stored word back through its type, so an older
-- row with a word unknown here is a clear error on read, never a guess.)

CREATE TRIGGER promotions_state_insert BEFORE INSERT ON promotions
    WHEN NEW.state NOT IN ('running', 'decided', 'interrupted')
      OR (NEW.outcome IS NOT NULL AND NEW.outcome NOT IN ('live', 'deployed', 'blocked', 'deploy-failed', 'rolled-back',
          'rollback-failed', 'aborted', 'interrupted', 'paused', 'unpinned', 'flags-set'))
BEGIN
    SELECT RAISE(ABORT, 'promotions: unknown state or outcome');
END;
CREATE TRIGGER promotions_state_update BEFORE UPDATE OF state, outcome ON promotions
    WHEN NEW.state NOT IN ('running', 'decided', 'interrupted')
      OR (NEW.outcome IS NOT NULL AND NEW.outcome NOT IN ('live', 'deployed', 'blocked', 'deploy-failed', 'rolled-back',
          'rollback-failed', 'aborted', 'interrupted', 'paused', 'unpinned', 'flags-set'))
BEGIN
    SELECT RAISE(ABORT, 'promotions: unknown state or outcome');
END;

CREATE TRIGGER runs_state_insert BEFORE INSERT ON runs
    WHEN NEW.state NOT IN ('running', 'paused', 'succeeded', 'failed', 'cancelled', 'interrupted')
BEGIN
    SELECT RAISE(ABORT, 'runs: unknown state');
END;
CREATE TRIGGER runs_state_update BEFORE UPDATE OF state ON runs
    WHEN NEW.state NOT IN ('running', 'paused', 'succeeded', 'failed', 'cancelled', 'interrupted')
BEGIN
    SELECT RAISE(ABORT, 'runs: unknown state');
END;

CREATE TRIGGER steps_state_insert BEFORE INSERT ON steps
    WHEN NEW.state NOT IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled', 'interrupted')
BEGIN
    SELECT RAISE(ABORT, 'steps: unknown state');
END;
CREATE TRIGGER steps_state_update BEFORE UPDATE OF state ON steps
    WHEN NEW.state NOT IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled', 'interrupted')
BEGIN
    SELECT RAISE(ABORT, 'steps: unknown state');
END;
