-- Inspections (巡检, IN1–IN7, BK1): plans and every version of them (compliance judges each
-- period by the version in force), one run per plan and slot, the log of every submitted item
-- result (the offline sync log: `client_op_id` is unique per contract, so a replayed sync neither
-- duplicates nor loses a reading), the current result of each target × item cell, photos, the
-- probes' sealed credentials, raw readings with hourly roll-ups, and the tickets failed items raised.
CREATE TABLE inspection_plan (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    name TEXT NOT NULL,
    duty_id TEXT NOT NULL DEFAULT '',
    -- The current version's definition (core::inspection::PlanDef as JSON).
    definition TEXT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1,
    -- Slots with `at` before this have been turned into runs; the next slot's `at` (the
    -- scheduler's index; NULL when inactive or when no slot follows).
    scheduled_until BIGINT NOT NULL,
    next_slot_at BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX inspection_plan_contract ON inspection_plan(contract_id, id);
CREATE INDEX inspection_plan_next ON inspection_plan(next_slot_at);

CREATE TABLE inspection_plan_version (
    plan_id BIGINT NOT NULL REFERENCES inspection_plan(id),
    version BIGINT NOT NULL,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    definition TEXT NOT NULL,
    active BIGINT NOT NULL,
    valid_from BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (plan_id, version)
);

CREATE TABLE inspection_run (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    plan_id BIGINT NOT NULL REFERENCES inspection_plan(id),
    plan_version BIGINT NOT NULL,
    slot_at BIGINT NOT NULL,
    due_by BIGINT NOT NULL,
    missed_at BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'done', 'late', 'missed')),
    assignee_user_id BIGINT REFERENCES app_user(id),
    -- Target × item cells, of them filled in by people, with a current result, failing now.
    cells BIGINT NOT NULL,
    manual_cells BIGINT NOT NULL,
    results BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    -- The run's probe items have not been run yet.
    probes_pending BIGINT NOT NULL DEFAULT 0,
    started_at BIGINT,
    -- When the work was done: the time the last reading was taken.
    finished_at BIGINT,
    signed_by_user_id BIGINT REFERENCES app_user(id),
    signed_by TEXT NOT NULL DEFAULT '',
    signed_at BIGINT,
    sign_note TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    UNIQUE (plan_id, slot_at)
);
CREATE INDEX inspection_run_contract ON inspection_run(contract_id, slot_at);
CREATE INDEX inspection_run_open ON inspection_run(state, missed_at);
CREATE INDEX inspection_run_probes ON inspection_run(probes_pending, slot_at);

-- Every submitted result, applied or not: nothing a phone sent is ever lost.
CREATE TABLE inspection_op (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    run_id BIGINT NOT NULL REFERENCES inspection_run(id),
    target_key TEXT NOT NULL,
    item_key TEXT NOT NULL,
    -- Set by the client for manual results (idempotent replay); NULL for probe results.
    client_op_id TEXT,
    source TEXT NOT NULL CHECK (source IN ('manual', 'probe')),
    ok BIGINT NOT NULL,
    value REAL,
    text_value TEXT NOT NULL DEFAULT '',
    readings TEXT NOT NULL DEFAULT '[]',
    note TEXT NOT NULL DEFAULT '',
    photo_ids TEXT NOT NULL DEFAULT '[]',
    recorded_at BIGINT NOT NULL,
    recorded_by_user_id BIGINT,
    recorded_by TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    -- current: the cell's value; superseded: replaced by a later reading; stale: arrived after a
    -- later reading of the same cell; rejected: the run was closed when it arrived.
    disposition TEXT NOT NULL CHECK (disposition IN ('current', 'superseded', 'stale', 'rejected')),
    UNIQUE (contract_id, client_op_id)
);
CREATE INDEX inspection_op_cell ON inspection_op(run_id, target_key, item_key);

CREATE TABLE inspection_result (
    run_id BIGINT NOT NULL REFERENCES inspection_run(id),
    target_key TEXT NOT NULL,
    item_key TEXT NOT NULL,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    op_id BIGINT NOT NULL REFERENCES inspection_op(id),
    ok BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    revisions BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, target_key, item_key)
);

CREATE TABLE inspection_photo (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    run_id BIGINT NOT NULL REFERENCES inspection_run(id),
    client_op_id TEXT,
    file_name TEXT NOT NULL,
    mime TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    storage_name TEXT NOT NULL UNIQUE,
    uploaded_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (contract_id, client_op_id)
);
CREATE INDEX inspection_photo_run ON inspection_photo(run_id);

CREATE TABLE inspection_credential (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    name TEXT NOT NULL,
    username TEXT NOT NULL DEFAULT '',
    -- Password and private key, sealed with the server key (never returned).
    secret_enc TEXT NOT NULL,
    has_password BIGINT NOT NULL DEFAULT 0,
    has_private_key BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    UNIQUE (contract_id, name)
);

-- Numeric readings of each cell over time: raw for the plan's retention, then hourly roll-ups.
CREATE TABLE inspection_sample (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    plan_id BIGINT NOT NULL REFERENCES inspection_plan(id),
    run_id BIGINT NOT NULL REFERENCES inspection_run(id),
    target_key TEXT NOT NULL,
    item_key TEXT NOT NULL,
    at BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    value REAL,
    UNIQUE (run_id, target_key, item_key)
);
CREATE INDEX inspection_sample_series ON inspection_sample(plan_id, target_key, item_key, at);
CREATE INDEX inspection_sample_at ON inspection_sample(plan_id, at);

CREATE TABLE inspection_rollup (
    plan_id BIGINT NOT NULL REFERENCES inspection_plan(id),
    target_key TEXT NOT NULL,
    item_key TEXT NOT NULL,
    hour_at BIGINT NOT NULL,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    n BIGINT NOT NULL,
    n_ok BIGINT NOT NULL,
    n_value BIGINT NOT NULL,
    min_value REAL,
    max_value REAL,
    sum_value REAL,
    PRIMARY KEY (plan_id, target_key, item_key, hour_at)
);

-- A failed cell and the ticket it raised (or commented on); recovered when the cell passed again.
CREATE TABLE inspection_anomaly (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    plan_id BIGINT NOT NULL REFERENCES inspection_plan(id),
    run_id BIGINT NOT NULL REFERENCES inspection_run(id),
    target_key TEXT NOT NULL,
    item_key TEXT NOT NULL,
    op_id BIGINT NOT NULL REFERENCES inspection_op(id),
    source_key TEXT NOT NULL,
    ticket_id BIGINT REFERENCES ticket(id),
    -- 1: this failure opened the ticket; 0: it was a repeat, commented on the open one.
    opened_ticket BIGINT NOT NULL,
    opened_at BIGINT NOT NULL,
    recovered_at BIGINT,
    UNIQUE (op_id)
);
CREATE INDEX inspection_anomaly_key ON inspection_anomaly(contract_id, source_key);
CREATE INDEX inspection_anomaly_run ON inspection_anomaly(run_id);
