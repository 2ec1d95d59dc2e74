//! SNMP GET of a list of OIDs (switches, UPS, air conditioning, PDUs), v2c or v3 (USM: authNoPriv,
//! authPriv, noAuthNoPriv), with snmp2 (cargo feature `snmp`, pure Rust crypto).
//!
//! Credentials come from the [`Secret`]: v2c/v1 community = `password` (default `public`); v3 user =
//! `username` (or the definition's `username`), authentication passphrase = `password`, privacy
//! passphrase = `private_key` when set, else the same as the authentication passphrase.
//!
//! Each OID becomes a reading named by its `name` (default: the OID itself), optionally scaled
//! (`scale: 0.1` for a device reporting tenths), with `min`/`max`/`equals` per OID. An OID the agent
//! does not have (`noSuchObject`, `noSuchInstance`, `endOfMibView`) fails the item naming the OID.
//! Text values in GB18030 (common on Chinese devices) are decoded as such when not UTF-8.
//!
//! UDP has no connection: an agent that does not answer (wrong community — agents stay silent —,
//! SNMP off, a firewall) is retried `retries` times, `attempt_timeout_ms` each, then fails.

// Parts used only by the feature-gated client stay compiled (and tested) without it.
#![cfg_attr(not(feature = "snmp"), allow(dead_code))]

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::node::{check_host, check_port};
use crate::{Message, Outcome, Secret, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpProbe {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub version: SnmpVersion,
    /// v3: the user when the credentials name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// v3 security level.
    #[serde(default)]
    pub security_level: SecurityLevel,
    /// v3 authentication protocol.
    #[serde(default)]
    pub auth_protocol: AuthProtocol,
    /// v3 privacy (encryption) protocol, for `auth_priv`.
    #[serde(default)]
    pub privacy_protocol: PrivacyProtocol,
    pub oids: Vec<OidSpec>,
    /// Wait for an answer this long per attempt.
    #[serde(default = "default_attempt_ms")]
    pub attempt_timeout_ms: u64,
    /// Attempts after the first (UDP datagrams get lost).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_port() -> u16 {
    161
}
fn default_attempt_ms() -> u64 {
    2000
}
fn default_retries() -> u32 {
    2
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnmpVersion {
    V1,
    #[default]
    V2c,
    V3,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityLevel {
    NoAuthNoPriv,
    AuthNoPriv,
    #[default]
    AuthPriv,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthProtocol {
    Md5,
    #[default]
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// AES-192/256 use the Blumenthal key extension first (Net-SNMP's), then Reeder (Cisco's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyProtocol {
    Des,
    #[default]
    #[serde(alias = "aes")]
    Aes128,
    Aes192,
    Aes256,
}

/// One OID to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidSpec {
    /// Numeric, dotted: `1.3.6.1.2.1.33.1.2.4.0` (a leading dot is accepted).
    pub oid: String,
    /// The reading key, e.g. `ups.battery_charge`; default the OID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Multiply a numeric value by this (0.1 for tenths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The exact value required (a number, or a text such as an interface's `ifOperStatus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
}

impl OidSpec {
    fn key(&self) -> String {
        self.name.clone().unwrap_or_else(|| normalize_oid(&self.oid))
    }
    fn numeric(&self) -> bool {
        self.scale.is_some() || self.min.is_some() || self.max.is_some() || matches!(self.equals, Some(Value::Num(_)))
    }
}

/// At most this many OIDs per definition, and per request PDU.
const MAX_OIDS: usize = 200;
const PER_PDU: usize = 20;

fn normalize_oid(s: &str) -> String {
    s.trim().trim_start_matches('.').to_string()
}

/// The arcs of a dotted OID, or why it is not one.
pub(crate) fn parse_oid(s: &str) -> Result<Vec<u64>, Message> {
    let t = normalize_oid(s);
    let bad = |why_zh: &str, why_en: &str| {
        Message::new(format!("OID 格式不对：{s:?}（{why_zh}）"), format!("bad OID syntax: {s:?} ({why_en})"))
    };
    if t.is_empty() {
        return Err(bad("为空", "empty"));
    }
    let arcs: Vec<u64> = t
        .split('.')
        .map(|a| if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) { None } else { a.parse().ok() })
        .collect::<Option<_>>()
        .ok_or_else(|| {
            bad("只能是以点分隔的数字，不支持 MIB 名称", "digits separated by dots only; MIB names are not supported")
        })?;
    if arcs.len() < 2 {
        return Err(bad("至少两段", "at least two arcs"));
    }
    if arcs[0] > 2 || (arcs[0] < 2 && arcs[1] >= 40) {
        return Err(bad("第一段须为 0、1 或 2", "the first arc must be 0, 1 or 2"));
    }
    if arcs.len() > 128 {
        return Err(bad("段数过多", "too many arcs"));
    }
    Ok(arcs)
}

impl SnmpProbe {
    pub fn validate(&self) -> Result<(), Message> {
        check_host(&self.host)?;
        check_port(self.port)?;
        if self.oids.is_empty() {
            return Err(Message::new("OID 列表为空", "the OID list is empty"));
        }
        if self.oids.len() > MAX_OIDS {
            return Err(Message::new(
                format!("OID 过多：{} 个（最多 {MAX_OIDS} 个）", self.oids.len()),
                format!("too many OIDs: {} (at most {MAX_OIDS})", self.oids.len()),
            ));
        }
        let mut keys = std::collections::BTreeSet::new();
        for o in &self.oids {
            parse_oid(&o.oid)?;
            let key = o.key();
            if key.trim().is_empty() {
                return Err(Message::new(
                    format!("OID {} 的名称为空", o.oid),
                    format!("OID {} has an empty name", o.oid),
                ));
            }
            if !keys.insert(key.clone()) {
                return Err(Message::new(format!("读数名重复：{key}"), format!("duplicate reading name: {key}")));
            }
            if o.scale.is_some_and(|s| !s.is_finite() || s == 0.0) {
                return Err(Message::new(
                    format!("{key} 的 scale 须为非零有限数"),
                    format!("the scale of {key} must be a finite non-zero number"),
                ));
            }
            crate::node::Limit { min: o.min, max: o.max }
                .validate(&key)
                .or_else(|e| if o.min.is_none() && o.max.is_none() { Ok(()) } else { Err(e) })?;
        }
        if self.attempt_timeout_ms == 0 || self.attempt_timeout_ms > 60_000 {
            return Err(Message::new(
                "attempt_timeout_ms 须在 1 到 60000 之间",
                "attempt_timeout_ms must be between 1 and 60000",
            ));
        }
        if self.retries > 10 {
            return Err(Message::new("retries 最多为 10", "retries must be at most 10"));
        }
        if self.version == SnmpVersion::V3
            && let Some(u) = &self.username
            && u.trim().is_empty()
        {
            return Err(Message::new("SNMPv3 用户名为空", "the SNMPv3 user name is empty"));
        }
        Ok(())
    }
}

#[cfg(not(feature = "snmp"))]
pub async fn run(p: &SnmpProbe, _secret: Option<&Secret>) -> Outcome {
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    crate::node::not_built(started, "snmp")
}

#[cfg(feature = "snmp")]
pub async fn run(p: &SnmpProbe, secret: Option<&Secret>) -> Outcome {
    imp::run(p, secret, Instant::now()).await
}

#[cfg(feature = "snmp")]
mod imp {
    use std::time::{Duration, Instant};

    use snmp2::{AsyncSession, Oid, v3};

    use super::*;
    use crate::Reading;
    use crate::node::{host_port, joined};

    /// What one attempt came to.
    enum Attempt {
        Done(Vec<(String, snmp_value::Owned)>),
        /// No answer within the attempt's time: try again.
        Silent,
        /// A definite failure: do not retry.
        Failed(Message),
    }

    mod snmp_value {
        /// A varbind value that outlives the session's receive buffer.
        #[derive(Debug, Clone)]
        pub enum Owned {
            Num(f64),
            Bool(bool),
            Bytes(Vec<u8>),
            Text(String),
            Missing(&'static str),
        }
    }
    use snmp_value::Owned;

    fn own(v: &snmp2::Value<'_>) -> Owned {
        use snmp2::Value as V;
        match v {
            V::Boolean(b) => Owned::Bool(*b),
            V::Integer(i) => Owned::Num(*i as f64),
            V::Counter32(n) | V::Unsigned32(n) | V::Timeticks(n) => Owned::Num(f64::from(*n)),
            V::Counter64(n) => Owned::Num(*n as f64),
            V::OctetString(b) => Owned::Bytes(b.to_vec()),
            V::Opaque(b) => Owned::Text(hex(b)),
            V::IpAddress(a) => Owned::Text(std::net::Ipv4Addr::from(*a).to_string()),
            V::ObjectIdentifier(o) => Owned::Text(o.to_id_string()),
            V::Null => Owned::Missing("NULL"),
            V::NoSuchObject => Owned::Missing("noSuchObject"),
            V::NoSuchInstance => Owned::Missing("noSuchInstance"),
            V::EndOfMibView => Owned::Missing("endOfMibView"),
            other => Owned::Text(format!("{other:?}")),
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
    }

    /// UTF-8, else GB18030 (Chinese devices), else hex (MAC addresses and other binary strings).
    fn text_of(b: &[u8]) -> String {
        let printable = |s: &str| s.chars().all(|c| !c.is_control() || c == '\n' || c == '\r' || c == '\t');
        let trimmed = b.strip_suffix(&[0]).unwrap_or(b);
        if let Ok(s) = std::str::from_utf8(trimmed)
            && printable(s)
        {
            return s.to_string();
        }
        let (s, _, had_errors) = encoding_rs::GB18030.decode(trimmed);
        if !had_errors && printable(&s) {
            return s.into_owned();
        }
        hex(b)
    }

    fn v3_failure(target: &str, kind: &v3::AuthErrorKind) -> Message {
        use v3::AuthErrorKind as K;
        match kind {
            K::NotAuthenticated | K::SignatureMismatch | K::UsernameMismatch => Message::new(
                format!("{target} 拒绝了 SNMPv3 凭据（用户不存在、认证口令或认证协议错误，或安全级别不符）"),
                format!(
                    "{target} rejected the SNMPv3 credentials (unknown user, wrong authentication passphrase or \
                     protocol, or a security level the user does not have)"
                ),
            ),
            K::ReplyNotEncrypted | K::PrivLengthMismatch | K::PayloadLengthMismatch | K::KeyExtensionRequired => {
                Message::new(
                    format!("{target} 的 SNMPv3 加密不匹配（加密口令或加密协议错误）：{kind:?}"),
                    format!(
                        "SNMPv3 privacy with {target} does not match (wrong privacy passphrase or protocol): {kind:?}"
                    ),
                )
            }
            other => Message::new(
                format!("与 {target} 的 SNMPv3 安全协商失败：{other:?}"),
                format!("the SNMPv3 security exchange with {target} failed: {other:?}"),
            ),
        }
    }

    fn snmp_failure(target: &str, e: &snmp2::Error) -> Attempt {
        match e {
            snmp2::Error::Receive | snmp2::Error::Send => Attempt::Failed(Message::new(
                format!("{target} 没有 SNMP 代理（端口不可达）"),
                format!("no SNMP agent at {target} (port unreachable)"),
            )),
            snmp2::Error::AuthFailure(k) => Attempt::Failed(v3_failure(target, k)),
            snmp2::Error::RequestIdMismatch => Attempt::Silent,
            other => Attempt::Failed(Message::new(
                format!("{target} 的 SNMP 回答无法解析：{other}"),
                format!("cannot understand the SNMP answer of {target}: {other}"),
            )),
        }
    }

    fn security(p: &SnmpProbe, secret: Option<&Secret>) -> Result<v3::Security, Message> {
        let user = secret
            .and_then(|s| s.username.clone())
            .or_else(|| p.username.clone())
            .ok_or_else(|| Message::new("未指定 SNMPv3 用户名", "no SNMPv3 user name given"))?;
        let auth_pw = secret.and_then(|s| s.password.clone()).unwrap_or_default();
        if p.security_level != SecurityLevel::NoAuthNoPriv && auth_pw.len() < 8 {
            return Err(Message::new(
                "SNMPv3 认证口令至少 8 个字符（RFC 3414）",
                "the SNMPv3 authentication passphrase must have at least 8 characters (RFC 3414)",
            ));
        }
        let proto = match p.auth_protocol {
            AuthProtocol::Md5 => v3::AuthProtocol::Md5,
            AuthProtocol::Sha1 => v3::AuthProtocol::Sha1,
            AuthProtocol::Sha224 => v3::AuthProtocol::Sha224,
            AuthProtocol::Sha256 => v3::AuthProtocol::Sha256,
            AuthProtocol::Sha384 => v3::AuthProtocol::Sha384,
            AuthProtocol::Sha512 => v3::AuthProtocol::Sha512,
        };
        let auth = match p.security_level {
            SecurityLevel::NoAuthNoPriv => v3::Auth::NoAuthNoPriv,
            SecurityLevel::AuthNoPriv => v3::Auth::AuthNoPriv,
            SecurityLevel::AuthPriv => {
                let privacy = secret.and_then(|s| s.private_key.clone()).unwrap_or_else(|| auth_pw.clone());
                if privacy.len() < 8 {
                    return Err(Message::new(
                        "SNMPv3 加密口令至少 8 个字符（RFC 3414）",
                        "the SNMPv3 privacy passphrase must have at least 8 characters (RFC 3414)",
                    ));
                }
                let cipher = match p.privacy_protocol {
                    PrivacyProtocol::Des => v3::Cipher::Des,
                    PrivacyProtocol::Aes128 => v3::Cipher::Aes128,
                    PrivacyProtocol::Aes192 => v3::Cipher::Aes192,
                    PrivacyProtocol::Aes256 => v3::Cipher::Aes256,
                };
                v3::Auth::AuthPriv { cipher, privacy_password: privacy.into_bytes() }
            }
        };
        let mut s = v3::Security::new(user.as_bytes(), auth_pw.as_bytes()).with_auth_protocol(proto).with_auth(auth);
        if matches!(p.privacy_protocol, PrivacyProtocol::Aes192 | PrivacyProtocol::Aes256)
            && p.security_level == SecurityLevel::AuthPriv
        {
            s = s.with_key_extension_method(v3::KeyExtension::Blumenthal);
        }
        Ok(s)
    }

    /// One attempt: a fresh socket (a late answer to an earlier attempt cannot be mistaken for
    /// this one's), v3 discovery, then GETs of at most [`PER_PDU`] OIDs each.
    async fn attempt(
        p: &SnmpProbe,
        secret: Option<&Secret>,
        oids: &[Oid<'static>],
        wait: Duration,
        req_id: i32,
    ) -> Attempt {
        let target = host_port(&p.host, p.port);
        let addr = (p.host.trim(), p.port);
        let made = match p.version {
            SnmpVersion::V1 | SnmpVersion::V2c => {
                let community = secret.and_then(|s| s.password.clone()).unwrap_or_else(|| "public".to_string());
                if p.version == SnmpVersion::V1 {
                    AsyncSession::new_v1(addr, community.as_bytes(), req_id).await
                } else {
                    AsyncSession::new_v2c(addr, community.as_bytes(), req_id).await
                }
            }
            SnmpVersion::V3 => match security(p, secret) {
                Ok(sec) => AsyncSession::new_v3(addr, req_id, sec).await,
                Err(m) => return Attempt::Failed(m),
            },
        };
        let mut sess = match made {
            Ok(s) => s,
            Err(e) => {
                return Attempt::Failed(Message::new(
                    format!("无法向 {target} 发送 SNMP 请求：{e}"),
                    format!("cannot send SNMP requests to {target}: {e}"),
                ));
            }
        };
        if p.version == SnmpVersion::V3 {
            match tokio::time::timeout(wait, sess.init()).await {
                Err(_) => return Attempt::Silent,
                Ok(Err(e)) => return snmp_failure(&target, &e),
                Ok(Ok(())) => {}
            }
        }
        let mut got = Vec::new();
        for chunk in oids.chunks(PER_PDU) {
            let refs: Vec<&Oid<'_>> = chunk.iter().collect();
            // The engine's boots/time are learnt from the first authenticated answer: repeat once.
            let mut tries = 0;
            loop {
                tries += 1;
                let r = match tokio::time::timeout(wait, sess.get_many(&refs)).await {
                    Err(_) => return Attempt::Silent,
                    Ok(r) => r,
                };
                match r {
                    Ok(pdu) => {
                        if pdu.error_status != 0 {
                            let idx = pdu.error_index as usize;
                            let which = idx.checked_sub(1).and_then(|i| chunk.get(i)).map(|o| o.to_id_string());
                            let status = error_status_name(pdu.error_status);
                            let (zh, en) = match which {
                                Some(o) => (format!("（OID {o}）"), format!(" (OID {o})")),
                                None => (String::new(), String::new()),
                            };
                            let missing = pdu.error_status == 2;
                            return Attempt::Failed(if missing {
                                Message::new(
                                    format!("{target} 上不存在该 OID{zh}：{status}"),
                                    format!("the agent at {target} has no such OID{en}: {status}"),
                                )
                            } else {
                                Message::new(
                                    format!("{target} 返回 SNMP 错误 {status}{zh}"),
                                    format!("{target} answered with SNMP error {status}{en}"),
                                )
                            });
                        }
                        for (oid, value) in pdu.varbinds {
                            got.push((oid.to_id_string(), own(&value)));
                        }
                        break;
                    }
                    Err(snmp2::Error::AuthUpdated) if tries < 3 => continue,
                    Err(e) => return snmp_failure(&target, &e),
                }
            }
        }
        Attempt::Done(got)
    }

    fn error_status_name(s: u32) -> String {
        let name = match s {
            1 => "tooBig",
            2 => "noSuchName",
            3 => "badValue",
            4 => "readOnly",
            5 => "genErr",
            6 => "noAccess",
            16 => "authorizationError",
            _ => "",
        };
        if name.is_empty() { format!("error-status {s}") } else { format!("{name} ({s})") }
    }

    pub(super) async fn run(p: &SnmpProbe, secret: Option<&Secret>, started: Instant) -> Outcome {
        if let Err(m) = p.validate() {
            return Outcome::fail(started.elapsed(), m, vec![]);
        }
        let target = host_port(&p.host, p.port);
        let oids: Vec<Oid<'static>> = match p
            .oids
            .iter()
            .map(|o| {
                let arcs = parse_oid(&o.oid)?;
                Oid::from(&arcs)
                    .map_err(|_| Message::new(format!("OID 格式不对：{}", o.oid), format!("bad OID syntax: {}", o.oid)))
            })
            .collect::<Result<_, _>>()
        {
            Ok(o) => o,
            Err(m) => return Outcome::fail(started.elapsed(), m, vec![]),
        };
        let wait = Duration::from_millis(p.attempt_timeout_ms);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() & 0x3fff_ffff)
            .unwrap_or(1) as i32;
        let mut got = None;
        for n in 0..=p.retries {
            match attempt(p, secret, &oids, wait, seed.wrapping_add(n as i32 * 1000)).await {
                Attempt::Done(v) => {
                    got = Some(v);
                    break;
                }
                Attempt::Silent => continue,
                Attempt::Failed(m) => return Outcome::fail(started.elapsed(), m, vec![]),
            }
        }
        let Some(got) = got else {
            let hint = match p.version {
                SnmpVersion::V3 => ("SNMPv3 用户或口令不对", "wrong v3 user or passphrase"),
                _ => ("团体名不对", "wrong community"),
            };
            return Outcome::fail(
                started.elapsed(),
                Message::new(
                    format!(
                        "{target} 没有回答 SNMP 请求（{} 次，每次 {} 毫秒）：{}、未启用 SNMP，或 UDP 被拦截",
                        p.retries + 1,
                        p.attempt_timeout_ms,
                        hint.0
                    ),
                    format!(
                        "no SNMP answer from {target} after {} attempt(s) of {} ms: {}, SNMP not enabled, or UDP blocked",
                        p.retries + 1,
                        p.attempt_timeout_ms,
                        hint.1
                    ),
                ),
                vec![],
            );
        };
        let mut readings = Vec::new();
        let mut problems = Vec::new();
        for (i, spec) in p.oids.iter().enumerate() {
            let want = normalize_oid(&spec.oid);
            let key = spec.key();
            // Agents answer in request order; match by OID and fall back on the position.
            let value = got.iter().find(|(o, _)| *o == want).or_else(|| got.get(i)).map(|(_, v)| v.clone());
            let shown_name = if spec.name.is_some() { format!("{want} ({key})") } else { want.clone() };
            let value = match value {
                None | Some(Owned::Missing("NULL")) => {
                    problems.push(Message::new(
                        format!("OID {shown_name} 没有返回值"),
                        format!("OID {shown_name} returned no value"),
                    ));
                    continue;
                }
                Some(Owned::Missing(why)) => {
                    problems.push(Message::new(
                        format!("{target} 上不存在 OID {shown_name}（{why}）"),
                        format!("OID {shown_name} does not exist on {target} ({why})"),
                    ));
                    continue;
                }
                Some(v) => v,
            };
            let mut reading = match value {
                Owned::Num(n) => Value::Num(n),
                Owned::Bool(b) => Value::Bool(b),
                Owned::Text(t) => Value::Text(t),
                Owned::Bytes(b) => {
                    let t = text_of(&b);
                    match t.trim().parse::<f64>() {
                        Ok(n) if spec.numeric() && n.is_finite() => Value::Num(n),
                        _ => Value::Text(t),
                    }
                }
                Owned::Missing(_) => unreachable!("handled above"),
            };
            if let (Some(scale), Value::Num(n)) = (spec.scale, &reading) {
                reading = Value::Num((n * scale * 1e6).round() / 1e6);
            }
            match (&reading, spec.min.is_some() || spec.max.is_some()) {
                (Value::Num(n), true) => {
                    problems.extend(crate::node::Limit { min: spec.min, max: spec.max }.violation(&key, *n));
                }
                (_, true) => problems.push(Message::new(
                    format!("{key} 的值不是数值，无法比较阈值"),
                    format!("{key} is not a number, cannot apply min/max"),
                )),
                _ => {}
            }
            if let Some(eq) = &spec.equals {
                let same = match (eq, &reading) {
                    (Value::Num(a), Value::Num(b)) => (a - b).abs() < 1e-9,
                    (Value::Text(a), Value::Text(b)) => a == b,
                    (Value::Text(a), Value::Num(b)) => a.trim().parse::<f64>().is_ok_and(|a| (a - b).abs() < 1e-9),
                    (a, b) => a == b,
                };
                if !same {
                    let show = |v: &Value| match v {
                        Value::Num(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Text(t) => format!("{t:?}"),
                    };
                    problems.push(Message::new(
                        format!("{key} = {}，应为 {}", show(&reading), show(eq)),
                        format!("{key} = {}, expected {}", show(&reading), show(eq)),
                    ));
                }
            }
            readings.push(Reading { key, value: reading });
        }
        match joined(problems) {
            None => Outcome::pass(started.elapsed(), readings),
            Some(m) => Outcome::fail(started.elapsed(), m, readings),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn octet_strings_become_text() {
            assert_eq!(text_of("机房 UPS".as_bytes()), "机房 UPS");
            let (gbk, _, _) = encoding_rs::GB18030.encode("二楼机房");
            assert_eq!(text_of(&gbk), "二楼机房");
            assert_eq!(text_of(&[0x00, 0x1b, 0x21, 0xff, 0x00, 0x01]), "00:1b:21:ff:00:01");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_are_checked() {
        assert_eq!(parse_oid(".1.3.6.1.2.1.1.3.0").unwrap(), vec![1, 3, 6, 1, 2, 1, 1, 3, 0]);
        assert!(parse_oid("1.3.6.1.2.1.33.1.2.4.0").is_ok());
        assert!(parse_oid("SNMPv2-MIB::sysUpTime.0").unwrap_err().en.contains("MIB names"));
        assert!(parse_oid("1..3").is_err());
        assert!(parse_oid("1").is_err());
        assert!(parse_oid("3.1.2").is_err());
        assert!(parse_oid("1.3.6.-1").is_err());
    }

    #[test]
    fn definitions() {
        let p: SnmpProbe = serde_json::from_value(serde_json::json!({
            "host": "10.0.0.20",
            "oids": [{"oid": "1.3.6.1.2.1.33.1.2.4.0", "name": "ups.battery_charge", "min": 50}]
        }))
        .unwrap();
        assert_eq!((p.port, p.version, p.retries), (161, SnmpVersion::V2c, 2));
        assert!(p.validate().is_ok());
        let mut q = p.clone();
        q.oids.clear();
        assert_eq!(q.validate().unwrap_err().en, "the OID list is empty");
        let mut q = p.clone();
        q.oids[0].oid = "1.3.6.x".into();
        assert!(q.validate().unwrap_err().en.starts_with("bad OID syntax"));
        let mut q = p.clone();
        q.oids.push(q.oids[0].clone());
        assert!(q.validate().unwrap_err().en.contains("duplicate"));
        let mut q = p.clone();
        q.port = 0;
        assert!(q.validate().is_err());
        assert!(
            serde_json::from_value::<SnmpProbe>(serde_json::json!({"host": "h", "oids": [], "community": "public"}))
                .is_err()
        );
    }
}
