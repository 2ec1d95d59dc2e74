//! Templates are embedded in the binary (government networks are isolated: nothing is loaded from
//! outside) and rendered by minijinja with HTML auto-escaping for every `.html` template.

use minijinja::{Environment, State, Value};

use crate::i18n::{Lang, t};

macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = embed![
    "base.html",
    "login.html",
    "totp.html",
    "enrol.html",
    "password.html",
    "home.html",
    "contract.html",
    "site_form.html",
    "admin_users.html",
    "admin_contracts.html",
    "admin_contract_form.html",
    "contract_fields.html",
    "memberships.html",
    "policy.html",
    "tokens.html",
    "audit.html",
    "error.html",
    "api_docs.html",
    "calendar_month.html",
    "tickets.html",
    "ticket.html",
    "ticket_new.html",
    "inbox.html",
    "desk_stats.html",
    "systems.html",
    "system.html",
    "suppliers.html",
    "supplier.html",
    "visits.html",
    "topology.html",
    "assets.html",
    "asset.html",
    "asset_form.html",
    "asset_fields.html",
    "rounds.html",
    "round.html",
];

pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source).unwrap_or_else(|e| panic!("template {name} does not parse: {e}"));
    }
    env.add_function("t", |state: &State, key: &str| -> String { t(lang_of(state), key) });
    env.add_filter("datetime", |ms: Value| -> String {
        format_ms(ms.as_i64(), "[year]-[month]-[day] [hour]:[minute]:[second]")
    });
    env.add_filter("date", |ms: Value| -> String { format_ms(ms.as_i64(), "[year]-[month]-[day]") });
    env
}

pub(crate) fn lang_of(state: &State) -> Lang {
    state.lookup("lang").and_then(|v| v.as_str().map(Lang::parse)).unwrap_or_default()
}

/// Times are stored in UTC and shown in Asia/Shanghai (UTC+8 all year; China has no daylight saving).
pub fn format_ms(ms: Option<i64>, pattern: &str) -> String {
    let Some(ms) = ms else { return String::new() };
    let Ok(fmt) = time::format_description::parse_borrowed::<2>(pattern) else { return String::new() };
    let Ok(utc) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    utc.to_offset(time::macros::offset!(+8)).format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn shanghai_time() {
        // 2026-01-01T00:00:00Z is 08:00 in Shanghai.
        assert_eq!(
            super::format_ms(Some(1_767_225_600_000), "[year]-[month]-[day] [hour]:[minute]"),
            "2026-01-01 08:00"
        );
    }
}
