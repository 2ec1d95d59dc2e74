-- Platform core: users, contracts, memberships, sessions, API tokens, settings, audit chain.
-- Timestamps are UTC epoch milliseconds; booleans are 0/1 integers on both engines.
CREATE TABLE app_user (
    id INTEGER PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    email TEXT NOT NULL DEFAULT '',
    admin_role TEXT CHECK (admin_role IN ('system_admin', 'security_admin', 'audit_admin')),
    password_hash TEXT NOT NULL,
    password_changed_at BIGINT NOT NULL,
    must_change_password BIGINT NOT NULL DEFAULT 1,
    totp_secret_enc TEXT,
    totp_last_step BIGINT NOT NULL DEFAULT 0,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT
);

CREATE TABLE password_history (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES app_user(id),
    password_hash TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX password_history_user ON password_history(user_id, changed_at);

CREATE TABLE contract (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    client_name TEXT NOT NULL DEFAULT '',
    vendor_name TEXT NOT NULL DEFAULT '',
    starts_on TEXT NOT NULL,
    ends_on TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('draft', 'active', 'closed')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE membership (
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    user_id BIGINT NOT NULL REFERENCES app_user(id),
    role TEXT NOT NULL CHECK (role IN ('service_desk', 'engineer', 'backline_expert', 'project_manager', 'client_supervisor', 'client_end_user')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (contract_id, user_id)
);
CREATE INDEX membership_user ON membership(user_id);

CREATE TABLE site (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    UNIQUE (contract_id, name)
);

CREATE TABLE user_session (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES app_user(id),
    stage TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    user_agent TEXT NOT NULL DEFAULT '',
    active_contract_id BIGINT,
    pending_totp_secret_enc TEXT,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX user_session_by_user ON user_session(user_id);

CREATE TABLE api_token (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    role TEXT NOT NULL,
    created_by BIGINT NOT NULL REFERENCES app_user(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT
);

CREATE TABLE setting (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row: the newest sequence number and hash of the chain. Every write transaction updates it
-- first, which serialises writers on both engines (a row lock on PostgreSQL, the write lock on SQLite).
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    touched_at BIGINT NOT NULL
);
INSERT INTO audit_head (id, seq, hash, touched_at)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    user_id BIGINT,
    username TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    contract_id BIGINT,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at_ms);
CREATE INDEX audit_log_contract ON audit_log(contract_id, seq);

-- Append-only: the product has no update or delete path, and the database refuses them too.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
