-- Engrams: one row per unit of long-term memory, with the embedding that indexes it.
-- Portable shape: the Postgres schema uses the same columns (BYTEA for the embedding).
CREATE TABLE engrams (
    id               TEXT    PRIMARY KEY NOT NULL, -- UUIDv7 string
    content          TEXT    NOT NULL,
    category         TEXT    NOT NULL
        CHECK (category IN ('fact', 'action', 'observation', 'plan', 'episode', 'procedure')),
    importance       REAL    NOT NULL CHECK (importance >= 0.0 AND importance <= 1.0),
    protected        INTEGER NOT NULL DEFAULT 0,
    embedding        BLOB    NOT NULL, -- dimension little-endian f32 values
    embedder         TEXT    NOT NULL,
    dimension        INTEGER NOT NULL CHECK (dimension > 0),
    created_at       BIGINT  NOT NULL, -- unix ms
    updated_at       BIGINT  NOT NULL, -- unix ms
    last_accessed_at BIGINT  NOT NULL, -- unix ms
    access_count     BIGINT  NOT NULL DEFAULT 0,
    metadata         TEXT    NOT NULL DEFAULT '{}' -- JSON object
);

CREATE INDEX engrams_category ON engrams (category);
CREATE INDEX engrams_created_at ON engrams (created_at);
