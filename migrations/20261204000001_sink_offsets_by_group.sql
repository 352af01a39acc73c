-- Progress is per sink, not per topic: two sinker groups (different routes, or a second copy)
-- writing the same topic into the same database each keep their own fence.
--
-- Rows written before this migration belong to the one group that wrote this database then
-- (the old key could not hold two); they get consumer_group '' ("written before groups were
-- recorded") and the first sinker group that starts without rows of its own for the topic
-- adopts them (crates/sinker/src/adopt.rs).
ALTER TABLE sink_offsets ADD COLUMN consumer_group text NOT NULL DEFAULT '';
ALTER TABLE sink_offsets DROP CONSTRAINT sink_offsets_pkey;
ALTER TABLE sink_offsets ADD PRIMARY KEY (consumer_group, topic, partition);
