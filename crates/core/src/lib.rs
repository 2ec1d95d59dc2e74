//! Pure domain core of yunwei.
//!
//! Architecture invariant: nothing in this crate performs I/O (no files, network, clock or database).
//! Callers pass the current time in; randomness is only used to create salts and secrets.

pub mod audit;
pub mod authz;
pub mod calendar;
pub mod contract;
pub mod desk;
pub mod exchange;
pub mod filetype;
pub mod inspection;
pub mod ledger;
pub mod password;
pub mod schedule;
pub mod sla;
pub mod text;
pub mod ticket;
pub mod totp;

/// A message shown to people: Chinese first, English second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Msg {
    pub zh: &'static str,
    pub en: &'static str,
}

impl Msg {
    pub const fn new(zh: &'static str, en: &'static str) -> Self {
        Msg { zh, en }
    }
}

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {}", self.zh, self.en)
    }
}
