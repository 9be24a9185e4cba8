-- A release set's other apps, recorded with the promotion when it begins:
-- recovery from a dead process puts every one of them back, not only the
-- app the promotion row names.
CREATE TABLE promotion_members (
    promotion_id INTEGER NOT NULL REFERENCES promotions (id),
    app          TEXT NOT NULL,
    digest       TEXT NOT NULL,
    PRIMARY KEY (promotion_id, app)
) STRICT;
