-- What the workbench asks for often: a promotion's capsule, and an app's
-- newest capsules.
CREATE INDEX capsules_by_promotion ON capsules (promotion_id);
CREATE INDEX capsules_by_app ON capsules (app, id);
CREATE INDEX promotions_by_env_app ON promotions (environment, app, id);
CREATE INDEX runs_by_promotion ON runs (promotion_id, id);
