-- The worked example of the README's "Routes" section: a shop's own tables, written by the
-- sinker with `--routes deploy/examples/routes.toml`. sluice never creates or alters these
-- tables: create them first (psql -f deploy/examples/shop.sql), then start the sinker.
CREATE SCHEMA IF NOT EXISTS shop;

-- page.viewed: insert-only, one row per event (keyed by the event id, so a replayed record
-- is skipped by ON CONFLICT DO NOTHING).
CREATE TABLE shop.page_views (
    event_id    uuid        PRIMARY KEY,
    user_id     bigint      NOT NULL,
    path        text        NOT NULL,
    referrer    text,
    duration_ms integer     NOT NULL,
    tags        text[],
    viewed_at   timestamptz NOT NULL,
    -- Not mapped: the table's default applies.
    source      text        NOT NULL DEFAULT 'sluice'
);

-- order.placed, order.paid: one row per order, upserted; a row is only replaced by an event
-- whose updated_at is at least the stored one, so a late or replayed older event never
-- overwrites a newer state.
CREATE TABLE shop.orders (
    order_id   bigint        PRIMARY KEY,
    customer   uuid          NOT NULL,
    status     text          NOT NULL,
    -- A negative total is refused by the database: the event is dead-lettered as
    -- database_rejected, the rest of its batch is written.
    total      numeric(12,2) NOT NULL CHECK (total >= 0),
    paid       boolean       NOT NULL,
    items      jsonb,
    updated_at timestamptz   NOT NULL
);

-- cart.updated upserts a cart (the last event wins); cart.emptied deletes it, and so does a
-- Kafka tombstone whose record key is the cart id.
CREATE TABLE shop.carts (
    cart_id    text             PRIMARY KEY,
    user_id    bigint           NOT NULL,
    items      integer          NOT NULL,
    value      double precision NOT NULL,
    last_sku   text,
    updated_at timestamptz      NOT NULL
);
