-- The step graph a run was started with (its steps, what each needs, the
-- critical path), as JSON: a promotion's DAG is drawn from what it ran,
-- not from today's template. NULL for runs recorded before this.
ALTER TABLE runs ADD COLUMN graph TEXT CHECK (graph IS NULL OR json_valid(graph));
