-- One row per event. The primary key is the event id: a replayed record never duplicates.
CREATE TABLE IF NOT EXISTS events (
    id          uuid        PRIMARY KEY,
    type        text        NOT NULL,
    key         text,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    data        jsonb       NOT NULL,
    -- When the sinker's transaction wrote the row (freshness = inserted_at - received_at).
    inserted_at timestamptz NOT NULL DEFAULT now()
);

-- The sinker's progress per partition, written in the same transaction as the rows it covers.
-- next_offset is exclusive: every record below it is in `events` (or in the dead-letter topic).
CREATE TABLE IF NOT EXISTS sink_offsets (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
