//! HTTP-level tests: each starts the real server on port 0 over a fresh database and runs on both
//! SQLite and PostgreSQL (see `harness`).

mod harness;

mod access;
mod audit;
mod auth;
mod bad_input;
mod browser;
mod chrome;
mod contract_files;
mod desk;
mod desk_browser;
mod desk_mail;
mod device_configs;
mod inspection_browser;
mod inspections;
mod interfaces;
mod ledger_assets;
mod ledger_browser;
mod ledger_import;
mod ledger_records;
mod ledger_search;
mod monitors;
mod ops;
mod storage;
mod tls;
