-- Continuous monitors (issue 6): a probe run on its own interval by the server's engine (20,000
-- HTTP monitors at 60 s is the target), its current state, raw results for its retention and
-- hourly roll-ups after (the shape inspections use), and the incidents that raise tickets.
CREATE TABLE monitor (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    name TEXT NOT NULL,
    -- The probe's kind (`http`, `tcp`, …), for lists.
    kind TEXT NOT NULL,
    -- storage::monitors::MonitorDef as JSON (the probe, interval, time-out, credential name,
    -- links, ticket rule, retention).
    definition TEXT NOT NULL,
    interval_s BIGINT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    -- Deleted monitors stay (their results, incidents and tickets point at them).
    deleted BIGINT NOT NULL DEFAULT 0,
    asset_id BIGINT REFERENCES asset(id),
    system_id BIGINT REFERENCES business_system(id),
    -- Order of changes across all contracts: the node running the engine reads the rows changed
    -- since the last one it saw. Assigned under the writer lock, so it only grows in commit order.
    change_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX monitor_contract ON monitor(contract_id, deleted, id);
CREATE INDEX monitor_change ON monitor(change_seq);

-- The current state, one row per monitor with at least one result (no row: not run yet). Kept
-- apart from `monitor` so that the result writer rewrites a narrow row, not the definition; the
-- writer changes `status` and `since` only on a transition.
CREATE TABLE monitor_state (
    monitor_id BIGINT PRIMARY KEY REFERENCES monitor(id),
    contract_id BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('up', 'down')),
    since BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    last_ok BIGINT NOT NULL,
    last_value REAL,
    last_elapsed_ms REAL NOT NULL,
    -- Why the last run failed ({"zh", "en"} as JSON), or ''.
    last_reason TEXT NOT NULL DEFAULT '',
    -- Consecutive failed runs.
    failures BIGINT NOT NULL DEFAULT 0,
    runs BIGINT NOT NULL DEFAULT 0,
    -- The open incident while down, and when its ticket was last commented on.
    incident_id BIGINT,
    last_comment_at BIGINT
) WITHOUT ROWID;
CREATE INDEX monitor_state_status ON monitor_state(contract_id, status, monitor_id);

-- Raw results: 333 rows a second at 20,000 monitors every 60 s. Clustered by monitor and time
-- (one B-tree per insert, and a monitor's history is one range); no foreign keys, whose lookups
-- every insert would pay (monitors are never removed, only marked deleted).
CREATE TABLE monitor_sample (
    monitor_id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    contract_id BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    value REAL,
    PRIMARY KEY (monitor_id, at)
) WITHOUT ROWID;

CREATE TABLE monitor_rollup (
    monitor_id BIGINT NOT NULL,
    hour_at BIGINT NOT NULL,
    contract_id BIGINT NOT NULL,
    n BIGINT NOT NULL,
    n_ok BIGINT NOT NULL,
    n_value BIGINT NOT NULL,
    min_value REAL,
    max_value REAL,
    sum_value REAL,
    PRIMARY KEY (monitor_id, hour_at)
) WITHOUT ROWID;

-- A period of a monitor being down, and the ticket it raised (or commented on).
CREATE TABLE monitor_incident (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    monitor_id BIGINT NOT NULL REFERENCES monitor(id),
    opened_at BIGINT NOT NULL,
    -- The failure that made it down ({"zh", "en"} as JSON, or '').
    reason TEXT NOT NULL DEFAULT '',
    recovered_at BIGINT,
    ticket_id BIGINT REFERENCES ticket(id),
    -- 1: this incident opened the ticket; 0: it commented on one still open.
    opened_ticket BIGINT NOT NULL DEFAULT 0,
    -- "Still down" comments written on the ticket.
    comments BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX monitor_incident_monitor ON monitor_incident(contract_id, monitor_id, id);
