-- Asset ledger (台账) and CMDB: assets with per-kind custom fields, business systems, relations
-- (runs on, connects to, powered by, backs up to; cabling labels and ports), suppliers and their
-- evaluations, the machine-room access register, reconciliation rounds (清查), network device
-- configuration backups, and the change history of every ledger record.
CREATE TABLE supplier (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    name TEXT NOT NULL,
    contacts TEXT NOT NULL DEFAULT '',
    scope TEXT NOT NULL DEFAULT '',
    sla_promise TEXT NOT NULL DEFAULT '',
    certifications TEXT NOT NULL DEFAULT '',
    trainings TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    UNIQUE (contract_id, name)
);

CREATE TABLE supplier_evaluation (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    supplier_id BIGINT NOT NULL REFERENCES supplier(id),
    period TEXT NOT NULL,
    score BIGINT NOT NULL,
    comments TEXT NOT NULL DEFAULT '',
    evaluated_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX supplier_evaluation_supplier ON supplier_evaluation(supplier_id, id);

-- Fields an operator adds to one kind of asset without a code change.
CREATE TABLE asset_field (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    kind TEXT NOT NULL,
    field_key TEXT NOT NULL,
    label TEXT NOT NULL,
    value_type TEXT NOT NULL CHECK (value_type IN ('text', 'number', 'date')),
    required BIGINT NOT NULL DEFAULT 0,
    position BIGINT NOT NULL DEFAULT 0,
    UNIQUE (contract_id, kind, field_key)
);

CREATE TABLE asset (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    kind TEXT NOT NULL CHECK (kind IN ('network', 'security', 'host', 'storage', 'terminal', 'environment', 'software', 'cloud', 'other')),
    name TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    brand TEXT NOT NULL DEFAULT '',
    manufacturer TEXT NOT NULL DEFAULT '',
    unit TEXT NOT NULL DEFAULT '',
    quantity BIGINT NOT NULL DEFAULT 1,
    serial TEXT NOT NULL DEFAULT '',
    manufactured_on TEXT NOT NULL DEFAULT '',
    installed_on TEXT NOT NULL DEFAULT '',
    site_id BIGINT REFERENCES site(id),
    room TEXT NOT NULL DEFAULT '',
    rack TEXT NOT NULL DEFAULT '',
    u_position TEXT NOT NULL DEFAULT '',
    department TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    asset_no TEXT NOT NULL DEFAULT '',
    dimensions TEXT NOT NULL DEFAULT '',
    weight TEXT NOT NULL DEFAULT '',
    accessories TEXT NOT NULL DEFAULT '',
    parameters TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'in_service' CHECK (status IN ('in_stock', 'in_service', 'under_repair', 'retired')),
    owner TEXT NOT NULL DEFAULT '',
    supplier_id BIGINT REFERENCES supplier(id),
    warranty_end TEXT NOT NULL DEFAULT '',
    ips TEXT NOT NULL DEFAULT '',
    ports TEXT NOT NULL DEFAULT '',
    -- Values of the operator-defined fields of this kind, as a JSON object.
    custom TEXT NOT NULL DEFAULT '{}',
    notes TEXT NOT NULL DEFAULT '',
    -- Lower-cased concatenation of the searchable fields (name, model, brand, serial, asset number,
    -- IPs, room, department) so that one indexed-free LIKE covers them.
    search_text TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX asset_contract ON asset(contract_id, id);
CREATE INDEX asset_kind ON asset(contract_id, kind, id);
CREATE INDEX asset_status ON asset(contract_id, status, id);
CREATE INDEX asset_site ON asset(contract_id, site_id);
CREATE UNIQUE INDEX asset_number ON asset(contract_id, asset_no) WHERE asset_no <> '';

CREATE TABLE business_system (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    name TEXT NOT NULL,
    group_name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    -- Components (OS, middleware, databases, ports) as a JSON list.
    components TEXT NOT NULL DEFAULT '[]',
    function_points BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    UNIQUE (contract_id, name)
);

-- Relations between ledger records: `asset:12 runs_on asset:3`, `system:4 runs_on asset:7`,
-- `asset:5 connects_to asset:9` with ports and the cable's label.
CREATE TABLE ledger_relation (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    from_ref TEXT NOT NULL,
    relation TEXT NOT NULL CHECK (relation IN ('runs_on', 'connects_to', 'powered_by', 'backs_up_to')),
    to_ref TEXT NOT NULL,
    from_port TEXT NOT NULL DEFAULT '',
    to_port TEXT NOT NULL DEFAULT '',
    cable_label TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    UNIQUE (contract_id, from_ref, relation, to_ref, from_port, to_port)
);
CREATE INDEX ledger_relation_to ON ledger_relation(contract_id, to_ref);

-- Every change of every ledger record: who, when, before and after (JSON).
CREATE TABLE ledger_history (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    record_ref TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    before_json TEXT NOT NULL DEFAULT '',
    after_json TEXT NOT NULL DEFAULT ''
);
CREATE INDEX ledger_history_record ON ledger_history(contract_id, record_ref, id);

-- Machine-room access register (AS8).
CREATE TABLE room_visit (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    site_id BIGINT NOT NULL REFERENCES site(id),
    visitor TEXT NOT NULL,
    organisation TEXT NOT NULL DEFAULT '',
    purpose TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    planned_on TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('requested', 'approved', 'rejected', 'in_room', 'closed')),
    decided_by TEXT NOT NULL DEFAULT '',
    decided_at BIGINT,
    decision_note TEXT NOT NULL DEFAULT '',
    escort TEXT NOT NULL DEFAULT '',
    entered_at BIGINT,
    exited_at BIGINT,
    work_done TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX room_visit_contract ON room_visit(contract_id, id);

-- Monthly reconciliation (清查, AS2).
CREATE TABLE reconciliation_round (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    period TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    closed_by TEXT NOT NULL DEFAULT '',
    closed_at BIGINT,
    UNIQUE (contract_id, period)
);

CREATE TABLE reconciliation_item (
    round_id BIGINT NOT NULL REFERENCES reconciliation_round(id),
    asset_id BIGINT NOT NULL REFERENCES asset(id),
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    outcome TEXT NOT NULL DEFAULT 'pending' CHECK (outcome IN ('pending', 'found', 'missing', 'moved', 'changed')),
    note TEXT NOT NULL DEFAULT '',
    checked_by TEXT NOT NULL DEFAULT '',
    checked_at BIGINT,
    PRIMARY KEY (round_id, asset_id)
);

-- Network device configuration backups (AS6): where and how to pull, and every distinct version.
CREATE TABLE device_config_target (
    asset_id BIGINT PRIMARY KEY REFERENCES asset(id),
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    vendor TEXT NOT NULL,
    host TEXT NOT NULL,
    port BIGINT NOT NULL DEFAULT 22,
    username TEXT NOT NULL,
    -- Sealed with the server's secret key (AES-256-GCM); never stored or shown in clear.
    password_enc TEXT NOT NULL,
    max_age_days BIGINT NOT NULL DEFAULT 31,
    last_attempt_at BIGINT,
    last_error TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE device_config_version (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    asset_id BIGINT NOT NULL REFERENCES asset(id),
    fetched_at BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    running TEXT NOT NULL,
    -- The saved (startup) configuration when the device tells it; empty when it cannot.
    saved TEXT NOT NULL DEFAULT '',
    saved_differs BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX device_config_version_asset ON device_config_version(asset_id, id);
