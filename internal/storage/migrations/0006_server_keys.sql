-- Other servers' signing keys (Server-Server API, "Retrieving server
-- keys"), fetched from the servers themselves or through notaries.
--
-- One row per key. valid_until_ts is the response's own value, for a key
-- listed in verify_keys; the 7-day cap the spec puts on it is applied
-- from fetched_ts when the key is used. expired_ts is set for a key from
-- old_verify_keys, which is valid only for events sent before it.
-- key_json is the whole response the key came in, signed by its server
-- (any notary's signature removed), kept so this server can serve it as
-- a notary, also after the origin has gone offline.
CREATE TABLE server_keys (
    server_name    {{ID}} NOT NULL,
    key_id         {{ID}} NOT NULL,
    verify_key     {{BLOB}} NOT NULL, -- the 32-byte ed25519 public key
    valid_until_ts BIGINT NOT NULL,
    expired_ts     BIGINT,
    key_json       {{BLOB}} NOT NULL,
    fetched_ts     BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
