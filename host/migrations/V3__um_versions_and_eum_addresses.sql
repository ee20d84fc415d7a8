-- [MS-EUMR] 3.1.5: how a dial plan orders its UM servers for a call
-- ('ordered': as listed; 'round-robin': from a server the call's Call-ID
-- picks), and each UM server's Exchange major version, in the order of
-- `servers` (NULL: none given). Columns of their own, not keys in `servers`:
-- routers of the previous release refuse a server entry with a key they do
-- not know, and must keep reading the database during a rolling upgrade.
ALTER TABLE exum.dial_plans
    ADD COLUMN selection text NOT NULL DEFAULT 'ordered' CHECK (selection IN ('ordered', 'round-robin')),
    ADD COLUMN server_versions integer[] NOT NULL DEFAULT '{}';

-- A user's EUM addresses after the first (`eum`): Exchange writes one with
-- the SIP address and one with the extension (or an E.164 number) for a user
-- of a SIP URI dial plan. A column of its own, so that routers of the previous
-- release, which read `eum` alone, keep working during a rolling upgrade.
ALTER TABLE exum.users ADD COLUMN eum_more text[] NOT NULL DEFAULT '{}';
