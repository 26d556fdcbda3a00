-- Page sign-ins (issue 13): a row per session, so that logout revokes it in every web
-- process and across restarts. `id` is the SHA-256 (hex) of the random session id the
-- signed cookie carries: the table never holds what a cookie needs.
-- (004 and 005 are reserved for other changes.)
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
