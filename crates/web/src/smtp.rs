//! The email channel: deliveries from the notification outbox sent over SMTP with lettre (tokio
//! transport; TLS through rustls with the ring provider, server certificates checked against the
//! system trust store, where operators add a private CA).
//!
//! The channel only sends; the outbox keeps state and retries. Errors come back as text without
//! the credentials, because the outbox stores them (`last_error`) and the log prints them.

use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use yunwei_storage::notifications::Channel;

/// Each SMTP step (connect, greeting, each command) must answer within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// A whole message, however slow the server trickles.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// After the server could not be reached, further messages fail at once for this long instead of
/// each waiting for the timeout: the outbox retries them later anyway, and the background pass
/// (the desk scheduler runs in it too) is not held up by an unreachable server.
const DOWN_WINDOW: Duration = Duration::from_secs(30);

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// Plain text (a relay on the same host or an isolated segment). Credentials are refused with
    /// it unless the server is on a loopback address.
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587 usually).
    #[default]
    Starttls,
    /// TLS from the first byte ("SMTPS", port 465 usually).
    Tls,
}

impl Security {
    /// `none`, `starttls` or `tls` (case-insensitive).
    pub fn parse(s: &str) -> Result<Security, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "plain" => Ok(Security::None),
            "starttls" => Ok(Security::Starttls),
            "tls" | "ssl" | "smtps" => Ok(Security::Tls),
            other => Err(format!("smtp_security must be none, starttls or tls, not {other:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Security::None => "none",
            Security::Starttls => "starttls",
            Security::Tls => "tls",
        }
    }

    /// The customary port: 25, 587 or 465.
    pub fn default_port(self) -> u16 {
        match self {
            Security::None => 25,
            Security::Starttls => 587,
            Security::Tls => 465,
        }
    }
}

/// Where and how to send mail. The password never appears in `Debug` output.
#[derive(Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, e.g. `运维台 <desk@example.cn>`.
    pub from: String,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .finish()
    }
}

/// The "email" [`Channel`].
pub struct SmtpChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Domain part of the sender, for Message-IDs.
    id_domain: String,
    /// `host:port (security)`, named in errors.
    server: String,
    /// The password and its encodings on the wire, removed from any error text.
    secrets: Vec<String>,
    /// When the server was last found unreachable, and why.
    down: Mutex<Option<(Instant, String)>>,
}

impl fmt::Debug for SmtpChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpChannel").field("server", &self.server).field("from", &self.from.to_string()).finish()
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

impl SmtpChannel {
    /// Checks the settings and prepares the transport (no connection is made until a message is
    /// sent). Errors name the setting at fault.
    pub fn new(config: &SmtpConfig) -> Result<SmtpChannel, String> {
        let host = config.host.trim().to_string();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
            return Err(format!("smtp_host is not a host name: {host:?}"));
        }
        if config.port == 0 {
            return Err("smtp_port must be between 1 and 65535".into());
        }
        let from: Mailbox = config.from.trim().parse().map_err(|e| {
            format!("smtp_from must be an address such as \"运维台 <desk@example.cn>\", not {:?}: {e}", config.from)
        })?;
        let id_domain = from.email.domain().to_string();
        let username = config.username.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let password = config.password.as_deref().filter(|s| !s.is_empty());
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
            (None, None) => None,
            (Some(_), None) => return Err("smtp_username is set but smtp_password is not".into()),
            (None, Some(_)) => return Err("smtp_password is set but smtp_username is not".into()),
        };
        if credentials.is_some() && config.security == Security::None && !is_loopback(&host) {
            return Err(format!(
                "refusing to send the SMTP password in clear text to {host}: set smtp_security to starttls or tls \
                 / 拒绝以明文向 {host} 发送 SMTP 密码：请将 smtp_security 设为 starttls 或 tls"
            ));
        }
        let tls = match config.security {
            Security::None => Tls::None,
            Security::Starttls | Security::Tls => {
                let params = TlsParameters::new_rustls(host.clone()).map_err(|e| format!("SMTP TLS setup: {e}"))?;
                if config.security == Security::Tls { Tls::Wrapper(params) } else { Tls::Required(params) }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(config.port)
            .tls(tls)
            .timeout(Some(STEP_TIMEOUT));
        let mut secrets = Vec::new();
        if let Some((u, p)) = credentials {
            let b64 = base64::engine::general_purpose::STANDARD;
            secrets.push(b64.encode(format!("\0{u}\0{p}")));
            secrets.push(b64.encode(&p));
            secrets.push(p.clone());
            builder = builder.credentials(Credentials::new(u, p));
        }
        Ok(SmtpChannel {
            transport: builder.build(),
            from,
            id_domain,
            server: format!("{host}:{} ({})", config.port, config.security.as_str()),
            secrets,
            down: Mutex::new(None),
        })
    }

    /// The message as it goes on the wire: UTF-8 subject (RFC 2047) and plain-text body, with
    /// From, To, Date and Message-ID, marked as sent automatically (RFC 3834) so that compliant
    /// auto-responders do not answer it into a ticket comment.
    pub fn message(&self, address: &str, subject: &str, body: &str) -> Result<Message, String> {
        let to: Address = address.trim().parse().map_err(|e| format!("not an e-mail address: {address:?}: {e}"))?;
        let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(subject)
            .date(SystemTime::now())
            .message_id(Some(format!("<{}@{}>", yunwei_storage::random_token(16), self.id_domain)))
            .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".into()))
            .header(ContentType::TEXT_PLAIN)
            .body(body.replace("\r\n", "\n"))
            .map_err(|e| format!("building the message: {e}"))
    }

    fn redact(&self, text: String) -> String {
        let mut text = text;
        for s in &self.secrets {
            if !s.is_empty() && text.contains(s.as_str()) {
                text = text.replace(s.as_str(), "<redacted>");
            }
        }
        text
    }

    fn recently_down(&self) -> Option<String> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match &*down {
            Some((at, why)) if at.elapsed() < DOWN_WINDOW => Some(why.clone()),
            _ => None,
        }
    }

    fn mark_down(&self, why: Option<&str>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        *down = why.map(|w| (Instant::now(), w.to_string()));
    }

    async fn send_one(&self, address: &str, subject: &str, body: &str) -> Result<(), String> {
        if let Some(why) = self.recently_down() {
            return Err(format!("{why} (not tried again within {} s)", DOWN_WINDOW.as_secs()));
        }
        let message = self.message(address, subject, body)?;
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await {
            Ok(Ok(_)) => {
                self.mark_down(None);
                Ok(())
            }
            Ok(Err(e)) => {
                let text = self.redact(format!("SMTP {}: {e}", self.server));
                // The server could not be reached or spoken to at all (as opposed to refusing this
                // one message): later messages of this pass would fare the same.
                if e.is_timeout() || e.is_tls() || !(e.is_transient() || e.is_permanent() || e.is_client()) {
                    self.mark_down(Some(&text));
                }
                Err(text)
            }
            Err(_) => {
                let text = format!("SMTP {}: no answer within {} s", self.server, SEND_TIMEOUT.as_secs());
                self.mark_down(Some(&text));
                Err(text)
            }
        }
    }
}

impl Channel for SmtpChannel {
    fn name(&self) -> &'static str {
        "email"
    }

    fn send<'a>(
        &'a self,
        address: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.send_one(address, subject, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmtpConfig {
        SmtpConfig {
            host: "mail.example.cn".into(),
            port: 587,
            security: Security::Starttls,
            username: Some("desk".into()),
            password: Some("Hunter2-秘密".into()),
            from: "运维台 <desk@example.cn>".into(),
        }
    }

    #[test]
    fn password_never_in_debug_output() {
        let c = config();
        let s = format!("{c:?}");
        assert!(!s.contains("Hunter2") && !s.contains("秘密"), "{s}");
        assert!(s.contains("<redacted>") && s.contains("mail.example.cn"), "{s}");
        let ch = SmtpChannel::new(&c).unwrap();
        let s = format!("{ch:?}");
        assert!(!s.contains("Hunter2"), "{s}");
        // Nor in an error that happens to quote it, in clear or as sent in AUTH PLAIN.
        let b64 = base64::engine::general_purpose::STANDARD;
        let plain = b64.encode("\0desk\0Hunter2-秘密");
        let e = ch.redact(format!("535 rejected Hunter2-秘密 / {plain}"));
        assert!(!e.contains("Hunter2") && !e.contains(&plain), "{e}");
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(Security::parse("STARTTLS"), Ok(Security::Starttls));
        assert_eq!(Security::parse("none"), Ok(Security::None));
        assert!(Security::parse("ssl3").is_err());
        assert_eq!(Security::Tls.default_port(), 465);
        let bad_from = SmtpConfig { from: "运维台 desk at example".into(), ..config() };
        assert!(SmtpChannel::new(&bad_from).unwrap_err().contains("smtp_from"));
        let clear = SmtpConfig { security: Security::None, ..config() };
        let e = SmtpChannel::new(&clear).unwrap_err();
        assert!(e.contains("clear text") && !e.contains("Hunter2"), "{e}");
        let local = SmtpConfig { security: Security::None, host: "127.0.0.1".into(), ..config() };
        assert!(SmtpChannel::new(&local).is_ok());
        let half = SmtpConfig { password: None, ..config() };
        assert!(SmtpChannel::new(&half).is_err());
    }

    #[test]
    fn message_headers_and_encoding() {
        let ch = SmtpChannel::new(&config()).unwrap();
        let m = ch
            .message("li@example.cn", "[CD-DCM-2022-000001] 新派单 / Dispatched to you", "协同工作子系统无法登录")
            .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        for h in [
            "From: ",
            "To: li@example.cn",
            "Date: ",
            "Message-ID: <",
            "Subject: [CD-DCM-2022-000001] =?utf-8?b?",
            "Auto-Submitted: auto-generated",
        ] {
            assert!(raw.contains(h), "{h} missing in {raw}");
        }
        assert!(raw.contains("@example.cn>\r\n"), "{raw}");
        assert!(raw.to_ascii_lowercase().contains("content-type: text/plain; charset=utf-8"), "{raw}");
        assert!(raw.is_ascii(), "headers and body are 7-bit encoded: {raw}");
        assert!(ch.message("not an address", "s", "b").is_err());
    }

    /// A server whose certificate no trusted authority signed: both TLS modes go through rustls
    /// (ring) and refuse it with a TLS error; certificate checks are never switched off.
    #[tokio::test]
    async fn untrusted_certificates_are_refused() {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::Arc;
        let ring = Arc::new(rustls::crypto::ring::default_provider());
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
        let server = Arc::new(
            rustls::ServerConfig::builder_with_provider(ring)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key.into())
                .unwrap(),
        );
        for security in [Security::Tls, Security::Starttls] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let server_config = server.clone();
            let peer = std::thread::spawn(move || -> Result<(), String> {
                let (mut tcp, _) = listener.accept().unwrap();
                if security == Security::Starttls {
                    let mut r = BufReader::new(tcp.try_clone().unwrap());
                    let mut line = String::new();
                    tcp.write_all(b"220 peer ESMTP\r\n").unwrap();
                    r.read_line(&mut line).unwrap();
                    assert!(line.starts_with("EHLO"), "{line}");
                    tcp.write_all(b"250-peer\r\n250 STARTTLS\r\n").unwrap();
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    assert!(line.starts_with("STARTTLS"), "{line}");
                    tcp.write_all(b"220 go ahead\r\n").unwrap();
                }
                let mut conn = rustls::ServerConnection::new(server_config).unwrap();
                while conn.is_handshaking() {
                    conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
                }
                Ok(())
            });
            let ch = SmtpChannel::new(&SmtpConfig { host: "localhost".into(), port, security, ..config() }).unwrap();
            let err = ch.send("li@example.cn", "主题", "正文").await.unwrap_err();
            assert!(err.contains("invalid peer certificate: UnknownIssuer"), "{security:?}: {err}");
            assert!(!err.contains("Hunter2"), "{err}");
            assert!(peer.join().unwrap().is_err(), "{security:?}: the handshake must not complete");
        }
    }
}
