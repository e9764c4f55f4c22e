-- What the owner's dashboard and its exports need of a turn (sidechat.store.queries): how it
-- ended, why it failed, its time to first token, whether retrieval found a good enough page,
-- the pages retrieved (JSON: [[url, title], ...]) and a salted hash of the visitor's address
-- (NULL with --store-client-address off; the address itself is never kept).
-- depends: 0003_turn_day
ALTER TABLE turns ADD COLUMN outcome TEXT;
ALTER TABLE turns ADD COLUMN error_kind TEXT;
ALTER TABLE turns ADD COLUMN ttft DOUBLE PRECISION;
ALTER TABLE turns ADD COLUMN found INTEGER;
ALTER TABLE turns ADD COLUMN source_urls TEXT;
ALTER TABLE turns ADD COLUMN client_hash TEXT;
