-- Engrams: one row per unit of long-term memory, with the embedding that indexes it.
-- The same migration as migrations/sqlite (same version, same columns, same checks), in
-- PostgreSQL's types: BYTEA for the embedding, DOUBLE PRECISION for importance, BIGINT for
-- the integers (the code reads every integer column as a 64-bit one), and ids compared
-- byte by byte (COLLATE "C"), so that paging by id orders as in SQLite.
CREATE TABLE engrams (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL, -- UUIDv7 string
    content          TEXT             NOT NULL,
    category         TEXT             NOT NULL
        CHECK (category IN ('fact', 'action', 'observation', 'plan', 'episode', 'procedure')),
    importance       DOUBLE PRECISION NOT NULL CHECK (importance >= 0.0 AND importance <= 1.0),
    protected        BIGINT           NOT NULL DEFAULT 0,
    embedding        BYTEA            NOT NULL, -- dimension little-endian f32 values
    embedder         TEXT             NOT NULL,
    dimension        BIGINT           NOT NULL CHECK (dimension > 0),
    created_at       BIGINT           NOT NULL, -- unix ms
    updated_at       BIGINT           NOT NULL, -- unix ms
    last_accessed_at BIGINT           NOT NULL, -- unix ms
    access_count     BIGINT           NOT NULL DEFAULT 0,
    metadata         TEXT             NOT NULL DEFAULT '{}' -- JSON object
);

CREATE INDEX engrams_category ON engrams (category);
CREATE INDEX engrams_created_at ON engrams (created_at);
