-- Content repository (Client-Server API, "Content repository").
--
-- One row per mxc:// URI. The bytes live on disk, content-addressed by
-- sha256 (signalling/internal/media), so identical uploads share one file;
-- a row is inserted only once its file is durable. server_name is part of
-- the key so that remote media cached later (federation) shares the table.
--
-- A row made by POST /_matrix/media/v1/create has no content yet:
-- sha256 is '' and unused_expires_at is when the ID lapses unless PUT
-- /_matrix/media/v3/upload fills it, which also clears unused_expires_at.
CREATE TABLE media (
    server_name       {{ID}} NOT NULL,
    media_id          {{ID}} NOT NULL,
    uploader          {{ID}} NOT NULL DEFAULT '', -- '' for remote media
    created_ts        BIGINT NOT NULL,
    content_type      TEXT NOT NULL DEFAULT '',
    filename          TEXT,                       -- NULL: uploaded without one
    size              BIGINT NOT NULL DEFAULT 0,
    sha256            {{ID}} NOT NULL DEFAULT '', -- hex; '' while pending
    unused_expires_at BIGINT,                     -- set while pending
    PRIMARY KEY (server_name, media_id)
);

-- Counting a user's pending uploads (the /create limit) and finding the
-- rows that share a file.
CREATE INDEX media_pending ON media (uploader, unused_expires_at);
CREATE INDEX media_sha256 ON media (sha256);
