-- Contracts as data: every imported contract file is kept as a numbered version (tickets keep the
-- version they were opened under); holiday years imported at run time override the embedded data.
CREATE TABLE contract_version (
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    version BIGINT NOT NULL,
    source TEXT NOT NULL,
    source_sm3 TEXT NOT NULL,
    summary TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    imported_by TEXT NOT NULL,
    PRIMARY KEY (contract_id, version)
);

CREATE TABLE holiday_year (
    year BIGINT PRIMARY KEY,
    source TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    imported_by TEXT NOT NULL
);
