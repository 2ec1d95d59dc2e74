//! Configuration: built-in defaults, then a TOML file, then `YUNWEI_*` environment variables,
//! then command-line flags. Secrets are redacted whenever the configuration is printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use yunwei_web::smtp::{Security, SmtpConfig};

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen. Without TLS only a loopback address is accepted unless `behind_tls_proxy`.
    pub listen: SocketAddr,
    /// Directory for the embedded database, its key file and backups.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; empty means `<data_dir>/yunwei.db`.
    pub database_url: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A TLS-terminating reverse proxy forwards to this server (trust its X-Forwarded-* headers).
    pub behind_tls_proxy: bool,
    /// Base64 of 32 bytes sealing secrets at rest. Empty: read or create `<data_dir>/secret.key`.
    /// Nodes sharing one PostgreSQL database must share this key.
    pub secret_key: String,
    /// How new secrets are sealed: `aes-256-gcm` (the default) or `sm4-gcm` (GB/T 32907). Values
    /// sealed either way stay readable after a change.
    pub secret_cipher: String,
    /// `text` or `json`.
    pub log_format: String,
    /// SMTP server for email notifications. Unset: no email is sent (the in-app inbox still works).
    pub smtp_host: Option<String>,
    /// Unset: 25, 587 or 465 by `smtp_security`.
    pub smtp_port: Option<u16>,
    /// `none`, `starttls` (the default) or `tls`.
    pub smtp_security: String,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// The sender of notifications, e.g. `运维台 <desk@example.cn>`; required with `smtp_host`.
    pub smtp_from: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            data_dir: PathBuf::from("yunwei-data"),
            database_url: String::new(),
            tls_cert: None,
            tls_key: None,
            behind_tls_proxy: false,
            secret_key: String::new(),
            secret_cipher: "aes-256-gcm".into(),
            log_format: "text".into(),
            smtp_host: None,
            smtp_port: None,
            smtp_security: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            smtp_from: String::new(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &yunwei_storage::redact_url(&self.database_url))
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("behind_tls_proxy", &self.behind_tls_proxy)
            .field("secret_key", &if self.secret_key.is_empty() { "" } else { "<redacted>" })
            .field("secret_cipher", &self.secret_cipher)
            .field("log_format", &self.log_format)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_security", &self.smtp_security)
            .field("smtp_username", &self.smtp_username)
            .field("smtp_password", &self.smtp_password.as_ref().map(|_| "<redacted>"))
            .field("smtp_from", &self.smtp_from)
            .finish()
    }
}

impl Config {
    /// Defaults → file (the given one, or `./yunwei.toml` when present) → environment.
    pub fn load(file: Option<&Path>) -> Result<Config, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) => fig = fig.merge(Toml::file_exact(f)),
            None => fig = fig.merge(Toml::file("yunwei.toml")),
        }
        // Only this struct's keys: other YUNWEI_* variables (YUNWEI_LOG, test settings) are not config.
        let keys = [
            "listen",
            "data_dir",
            "database_url",
            "tls_cert",
            "tls_key",
            "behind_tls_proxy",
            "secret_key",
            "secret_cipher",
            "log_format",
            "smtp_host",
            "smtp_port",
            "smtp_security",
            "smtp_from",
        ];
        fig = fig.merge(Env::prefixed("YUNWEI_").only(&keys));
        // Taken exactly as written: the parsed layer above would turn a password of digits into a
        // number (and drop its leading zeros).
        for key in ["smtp_username", "smtp_password"] {
            if let Ok(value) = std::env::var(format!("YUNWEI_{}", key.to_ascii_uppercase())) {
                fig = fig.merge((key, value));
            }
        }
        fig.extract().map_err(Box::new)
    }

    /// The SMTP settings when `smtp_host` is set.
    pub fn smtp(&self) -> Result<Option<SmtpConfig>, String> {
        let Some(host) = self.smtp_host.as_deref().map(str::trim).filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        let security = Security::parse(&self.smtp_security)?;
        if self.smtp_from.trim().is_empty() {
            return Err("smtp_from (e.g. \"运维台 <desk@example.cn>\") is required with smtp_host".into());
        }
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(Some(SmtpConfig {
            host: host.to_string(),
            port: self.smtp_port.unwrap_or(security.default_port()),
            security,
            username: non_empty(&self.smtp_username),
            password: non_empty(&self.smtp_password),
            from: self.smtp_from.trim().to_string(),
        }))
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.data_dir.join("yunwei.db").display())
        } else {
            self.database_url.clone()
        }
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database_url();
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
        Some(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let c = Config {
            database_url: "postgres://yw:hunter2@db/yw".into(),
            secret_key: "c2VjcmV0".into(),
            smtp_password: Some("smtp-pa55".into()),
            ..Config::default()
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && !s.contains("c2VjcmV0") && !s.contains("smtp-pa55"), "{s}");
        assert_eq!(c.sqlite_path(), None);
        assert_eq!(Config::default().sqlite_path().unwrap(), PathBuf::from("yunwei-data/yunwei.db"));
    }

    #[test]
    fn smtp_settings() {
        assert!(Config::default().smtp().unwrap().is_none(), "no email without smtp_host");
        let c = Config { smtp_host: Some("mail.example.cn".into()), ..Config::default() };
        assert!(c.smtp().unwrap_err().contains("smtp_from"));
        let c = Config { smtp_from: "运维台 <desk@example.cn>".into(), smtp_username: Some(String::new()), ..c };
        let s = c.smtp().unwrap().unwrap();
        assert_eq!((s.port, s.security, s.username), (587, Security::Starttls, None));
        let c = Config { smtp_security: "tls".into(), ..c };
        assert_eq!(c.smtp().unwrap().unwrap().port, 465);
        let c = Config { smtp_security: "ssl3".into(), ..c };
        assert!(c.smtp().is_err());
    }
}
