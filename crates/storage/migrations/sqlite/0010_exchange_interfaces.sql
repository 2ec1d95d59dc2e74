-- Data-exchange interfaces (数据对接接口, IN5; seed 004 tables 3-6 … 3-12): each interface's
-- definition and the state of its checks, every push its job reported through the heartbeat URL,
-- and every push window decided (ok, missing, count mismatch, check failed) with the ticket an
-- anomaly raised.
CREATE TABLE exchange_interface (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    -- core::exchange::InterfaceDef as JSON (no secrets: count queries name stored credentials).
    definition TEXT NOT NULL,
    -- The frequency in the canonical grammar ("every 10 min", "daily after 23:00", "once").
    frequency TEXT NOT NULL,
    -- SHA-256 of the heartbeat token (shown once); NULL without a heartbeat or once retired.
    heartbeat_digest TEXT,
    active BIGINT NOT NULL DEFAULT 1,
    -- When watching began: the one window of a "once" interface starts here.
    anchor_at BIGINT NOT NULL,
    -- Windows starting before this are decided; when the next one closes (the checker's index,
    -- NULL when paused, retired or when no window follows).
    checked_until BIGINT NOT NULL,
    next_check_at BIGINT,
    last_push_at BIGINT,
    last_records BIGINT,
    last_batch TEXT NOT NULL DEFAULT '',
    -- The last decided window's outcome.
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ok', 'missing', 'mismatch', 'error')),
    status_at BIGINT,
    status_detail TEXT NOT NULL DEFAULT '',
    last_source_count BIGINT,
    last_target_count BIGINT,
    -- The open anomaly: since when, its ticket, bad windows not yet told on the ticket and when
    -- it was last told (repeats are told at most hourly).
    anomaly_since BIGINT,
    anomaly_ticket_id BIGINT REFERENCES ticket(id),
    anomaly_repeats BIGINT NOT NULL DEFAULT 0,
    anomaly_told_at BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    retired_at BIGINT,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX exchange_interface_code ON exchange_interface(contract_id, code) WHERE retired_at IS NULL;
CREATE UNIQUE INDEX exchange_interface_token ON exchange_interface(heartbeat_digest);
CREATE INDEX exchange_interface_due ON exchange_interface(next_check_at);

-- Every push reported, with the server's time of arrival.
CREATE TABLE exchange_heartbeat (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    interface_id BIGINT NOT NULL REFERENCES exchange_interface(id),
    received_at BIGINT NOT NULL,
    records BIGINT,
    batch TEXT NOT NULL DEFAULT '',
    source_ip TEXT NOT NULL DEFAULT ''
);
CREATE INDEX exchange_heartbeat_at ON exchange_heartbeat(interface_id, received_at);

-- One decided window per interface and window start (the checker may run twice).
CREATE TABLE exchange_check (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    interface_id BIGINT NOT NULL REFERENCES exchange_interface(id),
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    closes_at BIGINT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'missing', 'mismatch', 'error')),
    -- Pushes received within the window and its grace, and the records they reported.
    pushes BIGINT NOT NULL,
    records BIGINT,
    source_count BIGINT,
    target_count BIGINT,
    detail TEXT NOT NULL DEFAULT '',
    ticket_id BIGINT REFERENCES ticket(id),
    checked_at BIGINT NOT NULL,
    UNIQUE (interface_id, window_start)
);
CREATE INDEX exchange_check_contract ON exchange_check(contract_id, window_start);
