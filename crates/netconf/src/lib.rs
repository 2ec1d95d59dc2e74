//! Network device configurations (BRIEF AS6): pull the running and saved configuration of a
//! switch, router or firewall over SSH, clean the terminal artefacts out of the output, and compare
//! versions.
//!
//! A leaf crate: storage never depends on it (SSH stays out of storage); the web crate's job and
//! API call [`pull`] and hand the result to `yunwei_storage::device_configs`.
//!
//! Design choices:
//! - **Vendor commands are data**: `vendors.toml`, embedded at build time ([`vendor`], [`vendors`]).
//! - **One exec channel per command** on one SSH connection: the `pre` commands (paging off) first,
//!   output discarded and failure ignored, then the running and the saved configuration. An exec
//!   channel runs exactly one command, and an interactive shell would need per-vendor prompt
//!   recognition to know when output ends; exec channels end with EOF/close instead. Whether a
//!   `pre` command carries over to the next channel depends on the device (some map every channel
//!   to the same VTY, some do not), so paging is also handled where it shows: a `---- More ----`
//!   prompt at the end of the output is answered with a space, and [`clean_output`] removes the
//!   prompts and the backspace/escape sequences that erase them.
//! - **Trust on first use** for host keys: [`pull`] returns the SHA-256 fingerprint it saw (the
//!   `SHA256:…` form `ssh-keygen -l` prints); given a remembered one, a different key is refused.
//! - **Bounded**: the whole pull (connect, key exchange, authentication, every command) runs under
//!   one timeout, and output is capped at [`MAX_OUTPUT`].
//! - **Crypto on ring** (russh `ring` feature, never its default aws-lc-rs). Legacy algorithms
//!   that older switches still need (diffie-hellman-group14-sha1, ECDH over NIST curves, hmac-sha1,
//!   AES-CBC) are offered after the modern ones, so they are used only when a device offers
//!   nothing better.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

mod clean;
mod diff;
#[cfg(feature = "ssh")]
mod ssh;

pub use clean::{MORE_PROMPTS, clean_output};
pub use diff::{DiffLine, DiffTag, diff, diff_with_context, differs_ignoring_volatile, is_volatile_line};
#[cfg(feature = "ssh")]
pub use ssh::pull;

/// Output of one command is refused beyond this size (a configuration is a few hundred KiB).
pub const MAX_OUTPUT: usize = 8 * 1024 * 1024;

/// Where and as whom to connect. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    /// The fingerprint remembered from the first pull (`SHA256:…`); `None` trusts the first key seen.
    pub host_key_sha256: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("host_key_sha256", &self.host_key_sha256)
            .finish()
    }
}

/// What a pull brought back. Both configurations are cleaned ([`clean_output`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub running: String,
    /// `None` when the family has no saved-configuration command or the device could not tell.
    pub saved: Option<String>,
    /// The fingerprint of the host key the device presented (`SHA256:…`).
    pub host_key_sha256: String,
}

/// The commands of one device family, as written in `vendors.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorCommands {
    /// "中文 / English" name for lists.
    #[serde(default)]
    pub label: String,
    pub running: String,
    #[serde(default)]
    pub saved: Option<String>,
    #[serde(default)]
    pub pre: Vec<String>,
}

const VENDORS_TOML: &str = include_str!("../vendors.toml");

static VENDORS: LazyLock<BTreeMap<String, VendorCommands>> = LazyLock::new(|| {
    // Checked by a unit test, so a bad edit of the embedded file fails the build's tests, not a node.
    parse_vendors(VENDORS_TOML).expect("vendors.toml is valid")
});

/// Parses a vendor table (the format of `vendors.toml`).
pub fn parse_vendors(text: &str) -> Result<BTreeMap<String, VendorCommands>, String> {
    let map: BTreeMap<String, VendorCommands> = toml::from_str(text).map_err(|e| e.to_string())?;
    for (name, v) in &map {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(format!("vendor name {name:?}: use lower-case letters, digits and _"));
        }
        let all = std::iter::once(&v.running).chain(v.saved.iter()).chain(v.pre.iter());
        for cmd in all {
            if cmd.trim().is_empty() || cmd.contains(['\n', '\r']) {
                return Err(format!("vendor {name}: commands are single non-empty lines"));
            }
        }
    }
    Ok(map)
}

/// Every known device family by name (`huawei_vrp`, `h3c_comware`, `cisco_ios`, …).
pub fn vendors() -> &'static BTreeMap<String, VendorCommands> {
    &VENDORS
}

/// The commands of one device family.
pub fn vendor(name: &str) -> Option<&'static VendorCommands> {
    VENDORS.get(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_vendor_table() {
        let v = vendors();
        assert_eq!(v.keys().map(String::as_str).collect::<Vec<_>>(), ["cisco_ios", "h3c_comware", "huawei_vrp"]);
        let hw = vendor("huawei_vrp").unwrap();
        assert_eq!(hw.running, "display current-configuration");
        assert_eq!(hw.saved.as_deref(), Some("display saved-configuration"));
        assert_eq!(hw.pre, ["screen-length 0 temporary"]);
        let h3c = vendor("h3c_comware").unwrap();
        assert_eq!(h3c.pre, ["screen-length disable"]);
        let cisco = vendor("cisco_ios").unwrap();
        assert_eq!(
            (cisco.running.as_str(), cisco.saved.as_deref()),
            ("show running-config", Some("show startup-config"))
        );
        assert_eq!(cisco.pre, ["terminal length 0"]);
        assert!(vendor("juniper").is_none());
    }

    #[test]
    fn vendor_table_is_checked() {
        assert!(parse_vendors("[x]\nrunning = \"show run\"\n").is_ok());
        assert!(parse_vendors("[X]\nrunning = \"show run\"\n").is_err(), "names are lower-case");
        assert!(parse_vendors("[x]\nrunning = \"\"\n").is_err(), "empty command");
        assert!(parse_vendors("[x]\nrunning = \"a\\nb\"\n").is_err(), "one line per command");
        assert!(parse_vendors("[x]\nrunning = \"a\"\nshell = true\n").is_err(), "unknown keys refused");
        assert!(parse_vendors("[x]\nsaved = \"a\"\n").is_err(), "running is required");
    }

    #[test]
    fn target_debug_hides_the_password() {
        let t = Target {
            host: "10.0.0.1".into(),
            port: 22,
            username: "backup".into(),
            password: "S3cret!pw".into(),
            host_key_sha256: None,
        };
        assert!(!format!("{t:?}").contains("S3cret"));
    }
}
