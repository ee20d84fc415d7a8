-- Rolling upgrades: a router runs against a database whose schema is newer
-- than its own as long as its schema version is at least
-- `min_router_schema`. A migration that only adds (a column with a default,
-- a table: an "expand" step) leaves it; one that removes or changes what
-- older routers read (a "contract" step) declares the oldest router schema
-- that still works with it in a line `-- exum-router: min_router_schema = N`,
-- and the router that applies it raises this value to N (after checking that
-- no older router is connected).
CREATE TABLE exum.schema_compatibility (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    min_router_schema integer NOT NULL CHECK (min_router_schema >= 1)
);
INSERT INTO exum.schema_compatibility (min_router_schema) VALUES (1);
