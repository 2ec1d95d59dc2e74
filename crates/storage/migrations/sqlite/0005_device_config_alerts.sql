-- Network device configuration backups (AS6), what the pull job needs beyond 0004: the host key
-- remembered on first use, when the last pull succeeded (a pull that finds the configuration
-- unchanged stores no version but is still a backup), whether the saved configuration differs from
-- the running one as of that pull, and the overdue alerts already sent (one per target and day).
ALTER TABLE device_config_target ADD COLUMN host_key_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE device_config_target ADD COLUMN last_success_at BIGINT;
ALTER TABLE device_config_target ADD COLUMN saved_differs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE device_config_target ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX device_config_target_contract ON device_config_target(contract_id);

CREATE TABLE device_config_alert (
    asset_id BIGINT NOT NULL REFERENCES asset(id),
    -- "overdue:YYYY-MM-DD" (the Shanghai day the alert was sent).
    alert_key TEXT NOT NULL,
    contract_id BIGINT NOT NULL REFERENCES contract(id),
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (asset_id, alert_key)
);
