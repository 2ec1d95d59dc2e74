-- Service desk: tickets on SLA clocks, their history, comments, attachments, links, work log,
-- fired notices, the in-app inbox with its delivery outbox, saved filters and the scheduler lease.
CREATE TABLE ticket (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    seq BIGINT NOT NULL,
    number TEXT NOT NULL UNIQUE,
    -- The contract file version the ticket was opened under: its SLA stays that version's.
    contract_version BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('fault', 'service_request', 'consultation', 'problem')),
    state TEXT NOT NULL CHECK (state IN ('awaiting_approval', 'recorded', 'dispatched', 'in_progress', 'suspended', 'awaiting_confirmation', 'closed', 'cancelled')),
    level TEXT NOT NULL,
    incident_class TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    reporter_user_id BIGINT REFERENCES app_user(id),
    reporter_name TEXT NOT NULL,
    reporter_contact TEXT NOT NULL DEFAULT '',
    system_name TEXT NOT NULL DEFAULT '',
    asset_ref TEXT NOT NULL DEFAULT '',
    received_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    assignee_user_id BIGINT REFERENCES app_user(id),
    team TEXT NOT NULL DEFAULT '',
    is_open BIGINT NOT NULL DEFAULT 1,
    -- Earliest due instant of a running clock, or 9e15 when none runs: the "breaching soonest" order.
    due_sort BIGINT NOT NULL,
    -- When the scheduler must look at the ticket again (reminder, breach, progress, escalation, auto-close).
    next_check_at BIGINT,
    analysis_cause TEXT NOT NULL DEFAULT '',
    analysis_process TEXT NOT NULL DEFAULT '',
    analysis_impact TEXT NOT NULL DEFAULT '',
    analysis_recommendation TEXT NOT NULL DEFAULT '',
    analysis_at BIGINT,
    summary TEXT NOT NULL DEFAULT '',
    summary_at BIGINT,
    rating BIGINT,
    rating_comment TEXT NOT NULL DEFAULT '',
    resolved_at BIGINT,
    closed_at BIGINT,
    minutes_spent BIGINT NOT NULL DEFAULT 0,
    parent_id BIGINT REFERENCES ticket(id),
    duplicate_of BIGINT REFERENCES ticket(id),
    -- Raised by an inspection or alert: one open ticket per source key.
    source_key TEXT,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    UNIQUE (contract_id, seq)
);
CREATE INDEX ticket_open_due ON ticket(contract_id, is_open, due_sort, id);
CREATE INDEX ticket_received ON ticket(contract_id, received_at);
CREATE INDEX ticket_assignee ON ticket(contract_id, assignee_user_id, is_open);
CREATE INDEX ticket_reporter ON ticket(contract_id, reporter_user_id);
CREATE INDEX ticket_next_check ON ticket(next_check_at) WHERE next_check_at IS NOT NULL;
CREATE UNIQUE INDEX ticket_open_source ON ticket(contract_id, source_key) WHERE source_key IS NOT NULL AND is_open = 1;

-- Everything that happened to a ticket, in order. `sla` holds the SLA engine's event name
-- (created, level:L1, responded, arrived, suspended, resumed, resolved, reopened, confirmed, or a
-- contract milestone such as dispatched) when the entry feeds the clocks.
CREATE TABLE ticket_event (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    ticket_id BIGINT NOT NULL REFERENCES ticket(id),
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    sla TEXT,
    actor_user_id BIGINT,
    actor_name TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX ticket_event_ticket ON ticket_event(ticket_id, id);

CREATE TABLE ticket_comment (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    ticket_id BIGINT NOT NULL REFERENCES ticket(id),
    author_user_id BIGINT,
    author_name TEXT NOT NULL,
    body TEXT NOT NULL,
    internal BIGINT NOT NULL DEFAULT 0,
    via TEXT NOT NULL DEFAULT 'web',
    created_at BIGINT NOT NULL
);
CREATE INDEX ticket_comment_ticket ON ticket_comment(ticket_id, id);

CREATE TABLE ticket_attachment (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    ticket_id BIGINT NOT NULL REFERENCES ticket(id),
    file_name TEXT NOT NULL,
    mime TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    storage_name TEXT NOT NULL UNIQUE,
    internal BIGINT NOT NULL DEFAULT 0,
    uploaded_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ticket_attachment_ticket ON ticket_attachment(ticket_id);

CREATE TABLE ticket_link (
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    from_id BIGINT NOT NULL REFERENCES ticket(id),
    to_id BIGINT NOT NULL REFERENCES ticket(id),
    kind TEXT NOT NULL CHECK (kind IN ('related', 'explains')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (from_id, to_id, kind)
);
CREATE INDEX ticket_link_to ON ticket_link(to_id);

CREATE TABLE ticket_worklog (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    ticket_id BIGINT NOT NULL REFERENCES ticket(id),
    user_id BIGINT REFERENCES app_user(id),
    user_name TEXT NOT NULL,
    minutes BIGINT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    at BIGINT NOT NULL
);
CREATE INDEX ticket_worklog_ticket ON ticket_worklog(ticket_id);
CREATE INDEX ticket_worklog_user ON ticket_worklog(contract_id, user_id, at);

-- Notices the scheduler has fired, so that no reminder, breach or escalation is sent twice
-- (several nodes may run the scheduler; the key makes a second firing a no-op).
CREATE TABLE ticket_notice (
    ticket_id BIGINT NOT NULL REFERENCES ticket(id),
    notice_key TEXT NOT NULL,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    due_at BIGINT NOT NULL,
    fired_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (ticket_id, notice_key)
);

-- The in-app inbox: one row per recipient (no user: an outbox-only message to an address).
CREATE TABLE notification (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    user_id BIGINT REFERENCES app_user(id),
    ticket_id BIGINT REFERENCES ticket(id),
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    read_at BIGINT
);
CREATE INDEX notification_user ON notification(user_id, id);

-- Deliveries through other channels (email now; WeCom, DingTalk, Feishu, SMS later), retried.
CREATE TABLE notification_outbox (
    id INTEGER PRIMARY KEY,
    notification_id BIGINT NOT NULL REFERENCES notification(id),
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at BIGINT
);
CREATE INDEX notification_outbox_due ON notification_outbox(state, next_attempt_at);

CREATE TABLE saved_filter (
    id INTEGER PRIMARY KEY,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    user_id BIGINT NOT NULL REFERENCES app_user(id),
    name TEXT NOT NULL,
    query TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (contract_id, user_id, name)
);

-- One row per background job: the node holding an unexpired lease runs it.
CREATE TABLE job_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
