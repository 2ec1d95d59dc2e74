//! SSH: run a command and check its exit status and output, or read host metrics from `/proc`
//! and `df` (the same readings as the node_exporter probe, see [`crate::node`]).
//!
//! russh on ring (cargo feature `ssh`, the client yunwei-netconf uses too). Authentication with the
//! private key of the [`Secret`] (its password is the key's passphrase when the key is encrypted),
//! else with the password (keyboard-interactive as the fallback). Host keys: the SHA-256
//! fingerprint the server presented is always the reading `host_key` (trust on first use: the
//! caller may store it as `host_key_sha256`); given an expected fingerprint, a different key is
//! refused before any credential is sent.
//!
//! Readings of a command: `connect_ms`, `host_key`, `exit_status`, `run_ms`, `stdout` (the first
//! 2,000 characters) and, with `stdout_regex`, `match` (the first capture group, or the whole
//! match; a number when it reads as one). A command that hangs is cut by the probe's time-out,
//! which drops the connection (sshd then ends the command).
//!
//! Host metrics need a Linux target with `/proc`, `df -P -T` and `sleep` (GNU or BusyBox).

// Parts used only by the feature-gated client stay compiled (and tested) without it.
#![cfg_attr(not(feature = "ssh"), allow(dead_code))]

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::node::{
    CpuTimes, Disk, HostMetrics, Limit, check_cpu_sample, check_host, check_limits_spec, check_mounts, check_port,
    default_cpu_sample_ms,
};
use crate::{Message, Outcome, Secret};

/// Where and as whom to connect; shared with the remote backup probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTarget {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The user when the credentials name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The expected host key, `SHA256:…` as `ssh-keygen -l` prints it; `None` accepts any key
    /// and reports it as the reading `host_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_sha256: Option<String>,
}

fn default_port() -> u16 {
    22
}

impl SshTarget {
    pub fn validate(&self) -> Result<(), Message> {
        check_host(&self.host)?;
        check_port(self.port)?;
        if let Some(u) = &self.username
            && (u.trim().is_empty() || u.chars().any(char::is_whitespace))
        {
            return Err(Message::new(format!("用户名无效：{u:?}"), format!("invalid user name: {u:?}")));
        }
        if let Some(fp) = &self.host_key_sha256 {
            let body = fp.trim().trim_start_matches("SHA256:").trim_end_matches('=');
            let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
            if body.len() != 43 || !body.chars().all(b64) {
                return Err(Message::new(
                    format!("主机密钥指纹格式不对（应为 ssh-keygen -l 显示的 SHA256:… 形式）：{fp}"),
                    format!("the host key fingerprint is not in the SHA256:… form ssh-keygen -l prints: {fp}"),
                ));
            }
        }
        Ok(())
    }
}

/// Run a command, or read host metrics, over SSH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshProbe {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_sha256: Option<String>,
    /// The command (run by the user's login shell). Exactly one of `command` and `host_metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Read CPU, memory, disk and load instead of running a command.
    #[serde(default)]
    pub host_metrics: bool,
    /// The exit status the command must end with; `null` accepts any.
    #[serde(default = "default_exit")]
    pub expect_exit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_regex: Option<String>,
    /// Host metrics: interval between the two CPU samples (0: no `cpu.busy_pct`).
    #[serde(default = "default_cpu_sample_ms")]
    pub cpu_sample_ms: u64,
    /// Host metrics: report only these mount points.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Limits per reading key (`*` matches any text), as for node_exporter; with a command, on
    /// `exit_status`, `run_ms` or `match`.
    #[serde(default)]
    pub limits: BTreeMap<String, Limit>,
}

fn default_exit() -> Option<u32> {
    Some(0)
}

/// Output of one command beyond this is refused.
pub(crate) const MAX_OUTPUT: usize = 1024 * 1024;

impl SshProbe {
    pub(crate) fn target(&self) -> SshTarget {
        SshTarget {
            host: self.host.clone(),
            port: self.port,
            username: self.username.clone(),
            host_key_sha256: self.host_key_sha256.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), Message> {
        self.target().validate()?;
        match (&self.command, self.host_metrics) {
            (None, false) => {
                return Err(Message::new(
                    "需要 command（要执行的命令）或 host_metrics: true",
                    "set either command (the command to run) or host_metrics: true",
                ));
            }
            (Some(_), true) => {
                return Err(Message::new(
                    "command 与 host_metrics 只能二选一",
                    "set either command or host_metrics, not both",
                ));
            }
            (Some(c), false) if c.trim().is_empty() => return Err(Message::new("命令为空", "the command is empty")),
            _ => {}
        }
        if self.host_metrics && (self.stdout_contains.is_some() || self.stdout_regex.is_some()) {
            return Err(Message::new(
                "stdout_contains / stdout_regex 只用于命令",
                "stdout_contains / stdout_regex apply to a command, not to host metrics",
            ));
        }
        if let Some(re) = &self.stdout_regex {
            regex::Regex::new(re).map_err(|e| {
                Message::new(format!("正则表达式无效：{re}（{e}）"), format!("invalid regular expression {re}: {e}"))
            })?;
        }
        check_cpu_sample(self.cpu_sample_ms)?;
        check_mounts(&self.mounts)?;
        check_limits_spec(&self.limits)
    }
}

#[cfg(not(feature = "ssh"))]
pub async fn run(p: &SshProbe, _secret: Option<&Secret>) -> Outcome {
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    crate::node::not_built(started, "ssh")
}

#[cfg(feature = "ssh")]
pub async fn run(p: &SshProbe, secret: Option<&Secret>) -> Outcome {
    use crate::Reading;
    use crate::node::finish;
    use crate::postgres::ms_since;

    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    let session = match imp::Session::open(&p.target(), secret).await {
        Ok(s) => s,
        Err((m, host_key)) => {
            let readings = host_key.map(|k| vec![Reading::text("host_key", k)]).unwrap_or_default();
            return Outcome::fail(started.elapsed(), m, readings);
        }
    };
    let mut readings =
        vec![Reading::num("connect_ms", ms_since(started)), Reading::text("host_key", session.host_key.clone())];
    let mut problems = Vec::new();

    if p.host_metrics {
        let script = host_metrics_script(p.cpu_sample_ms);
        match session.exec(&script, MAX_OUTPUT).await {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                let m = parse_host_metrics(&text);
                if m.mem_total.is_none() && m.load.is_none() {
                    let err = String::from_utf8_lossy(&out.stderr).chars().take(300).collect::<String>();
                    problems.push(Message::new(
                        format!("无法读取主机指标（目标不是 Linux，或 /proc 不可读）：{}", err.trim()),
                        format!("cannot read host metrics (not Linux, or /proc unreadable): {}", err.trim()),
                    ));
                }
                readings.extend(m.readings(&p.mounts));
            }
            Err(m) => problems.push(m),
        }
    } else if let Some(cmd) = &p.command {
        let t = Instant::now();
        match session.exec(cmd, MAX_OUTPUT).await {
            Ok(out) => {
                readings.push(Reading::num("run_ms", ms_since(t)));
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                match out.exit_status {
                    Some(s) => readings.push(Reading::num("exit_status", f64::from(s))),
                    None => readings.push(Reading::text("exit_signal", out.exit_signal.clone().unwrap_or_default())),
                }
                let shown: String = stdout.trim_end().chars().take(2000).collect();
                readings.push(Reading::text("stdout", shown));
                if let Some(want) = p.expect_exit
                    && out.exit_status != Some(want)
                {
                    let got = match (out.exit_status, &out.exit_signal) {
                        (Some(s), _) => format!("{s}"),
                        (None, Some(sig)) => format!("signal {sig}"),
                        (None, None) => "none".to_string(),
                    };
                    let err: String = String::from_utf8_lossy(&out.stderr).trim().chars().take(300).collect();
                    let err = if err.is_empty() { String::new() } else { format!(": {err}") };
                    problems.push(Message::new(
                        format!("命令退出状态为 {got}，应为 {want}{err}"),
                        format!("the command exited with status {got}, expected {want}{err}"),
                    ));
                }
                if let Some(needle) = &p.stdout_contains
                    && !stdout.contains(needle.as_str())
                {
                    problems.push(Message::new(
                        format!("命令输出中没有 {needle:?}"),
                        format!("the command output does not contain {needle:?}"),
                    ));
                }
                if let Some(re) = &p.stdout_regex
                    && let Ok(re) = regex::Regex::new(re)
                {
                    match re.captures(&stdout) {
                        Some(c) => {
                            let m = c.get(1).or_else(|| c.get(0)).map(|m| m.as_str()).unwrap_or("");
                            readings.push(match m.trim().parse::<f64>() {
                                Ok(n) if n.is_finite() => Reading::num("match", n),
                                _ => Reading::text("match", m),
                            });
                        }
                        None => problems.push(Message::new(
                            format!("命令输出不匹配正则表达式 {}", re.as_str()),
                            format!("the command output does not match {}", re.as_str()),
                        )),
                    }
                }
            }
            Err(m) => problems.push(m),
        }
    }
    session.close().await;
    finish(started, readings, &p.limits, problems)
}

/// One shell script that prints everything the host metrics need, in sections.
pub(crate) fn host_metrics_script(cpu_sample_ms: u64) -> String {
    let mut s = String::from(
        "export LC_ALL=C; echo @@loadavg; cat /proc/loadavg; echo @@meminfo; cat /proc/meminfo; \
         echo @@cpus; grep -c '^processor' /proc/cpuinfo; echo @@uptime; cat /proc/uptime; \
         echo @@stat1; grep '^cpu ' /proc/stat; echo @@df; df -P -T -k 2>/dev/null;",
    );
    if cpu_sample_ms > 0 {
        s.push_str(&format!(
            " sleep {}.{:03}; echo @@stat2; grep '^cpu ' /proc/stat;",
            cpu_sample_ms / 1000,
            cpu_sample_ms % 1000
        ));
    }
    s.push_str(" echo @@end");
    s
}

/// Parses the output of [`host_metrics_script`].
pub(crate) fn parse_host_metrics(text: &str) -> HostMetrics {
    let mut sections: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut current = "";
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            current = name.trim();
            continue;
        }
        sections.entry(current).or_default().push(line);
    }
    let section = |n: &str| sections.get(n).map(Vec::as_slice).unwrap_or(&[]);
    let mut m = HostMetrics::default();
    if let Some(l) = section("loadavg").first() {
        let v: Vec<f64> = l.split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect();
        if let [a, b, c] = v[..] {
            m.load = Some([a, b, c]);
        }
    }
    let kb = |key: &str| {
        section("meminfo").iter().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<f64>().ok().map(|v| v * 1024.0)
        })
    };
    m.mem_total = kb("MemTotal");
    m.mem_available = kb("MemAvailable");
    m.swap_total = kb("SwapTotal");
    m.swap_free = kb("SwapFree");
    m.cores = section("cpus").first().and_then(|l| l.trim().parse::<f64>().ok()).filter(|c| *c > 0.0);
    m.uptime_s = section("uptime").first().and_then(|l| l.split_whitespace().next()?.parse().ok());
    let cpu = |n: &str| -> Option<CpuTimes> {
        let l = section(n).first()?;
        let v: Vec<f64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user already).
        let total: f64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
        (v.len() >= 4).then_some(CpuTimes { total, idle })
    };
    m.cpu_times = cpu("stat1");
    m.cpu_busy_pct = crate::node::cpu_busy_pct(m.cpu_times, cpu("stat2"));
    for l in section("df").iter().skip(1) {
        // Filesystem Type 1024-blocks Used Available Capacity Mounted-on (the mount may have spaces).
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 7 {
            continue;
        }
        let (Ok(used), Ok(avail)) = (f[3].parse::<f64>(), f[4].parse::<f64>()) else { continue };
        let mount = f[6..].join(" ");
        let fstype = f[1];
        if crate::node::pseudo_fs(fstype, &mount) || m.disks.iter().any(|d| d.mount == mount) {
            continue;
        }
        m.disks.push(Disk { mount, fstype: fstype.to_string(), used: used * 1024.0, avail: avail * 1024.0 });
    }
    m
}

#[cfg(feature = "ssh")]
pub(crate) mod imp {
    //! The SSH session shared by the command, host-metrics and remote backup probes.

    use std::borrow::Cow;
    use std::sync::{Arc, Mutex};

    use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
    use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
    use russh::{ChannelMsg, Disconnect, MethodKind, Preferred, cipher, kex, mac};

    use super::SshTarget;
    use crate::node::host_port;
    use crate::{Message, Secret};

    /// Remembers the key the server presented and refuses one that differs from the expected.
    pub(crate) struct KeyCheck {
        expected: Option<String>,
        seen: Arc<Mutex<Option<String>>>,
    }

    impl client::Handler for KeyCheck {
        type Error = russh::Error;

        async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
            let fp = match key {
                PublicKeyOrCertificate::PublicKey { key, .. } => key.fingerprint(HashAlg::Sha256),
                PublicKeyOrCertificate::Certificate(c) => c.public_key().fingerprint(HashAlg::Sha256),
            }
            .to_string();
            let ok = self.expected.as_deref().is_none_or(|e| same_fingerprint(e, &fp));
            if let Ok(mut g) = self.seen.lock() {
                *g = Some(fp);
            }
            Ok(ok)
        }
    }

    /// Fingerprints with or without the `SHA256:` prefix and base64 padding.
    pub(crate) fn same_fingerprint(a: &str, b: &str) -> bool {
        let norm = |s: &str| s.trim().trim_start_matches("SHA256:").trim_end_matches('=').to_string();
        norm(a) == norm(b)
    }

    /// Modern algorithms first, then the legacy ones older hosts still need (as yunwei-netconf).
    fn config() -> client::Config {
        let mut kexes: Vec<kex::Name> = Preferred::DEFAULT.kex.to_vec();
        let ext = kexes
            .iter()
            .position(|k| k.as_ref().starts_with("ext-info") || k.as_ref().starts_with("kex-strict"))
            .unwrap_or(kexes.len());
        for (i, k) in [kex::ECDH_SHA2_NISTP256, kex::ECDH_SHA2_NISTP384, kex::ECDH_SHA2_NISTP521, kex::DH_G14_SHA1]
            .into_iter()
            .enumerate()
        {
            kexes.insert(ext + i, k);
        }
        let mut ciphers: Vec<cipher::Name> = Preferred::DEFAULT.cipher.to_vec();
        ciphers.extend([cipher::AES_256_CBC, cipher::AES_128_CBC]);
        let mut macs: Vec<mac::Name> = Preferred::DEFAULT.mac.to_vec();
        macs.extend([mac::HMAC_SHA1_ETM, mac::HMAC_SHA1]);
        client::Config {
            preferred: Preferred {
                kex: Cow::Owned(kexes),
                cipher: Cow::Owned(ciphers),
                mac: Cow::Owned(macs),
                ..Preferred::DEFAULT
            },
            nodelay: true,
            ..Default::default()
        }
    }

    fn describe(e: &russh::Error) -> String {
        match e {
            russh::Error::IO(io) => io.to_string(),
            russh::Error::Disconnect => "the server closed the connection".into(),
            russh::Error::NoCommonAlgo { kind, ours, theirs } => {
                format!("no common {kind:?} algorithm (ours: {}, server: {})", ours.join(","), theirs.join(","))
            }
            other => other.to_string(),
        }
    }

    pub(crate) struct Session {
        handle: client::Handle<KeyCheck>,
        /// `SHA256:…` of the key the server presented.
        pub host_key: String,
    }

    pub(crate) struct Exec {
        pub stdout: Vec<u8>,
        pub stderr: Vec<u8>,
        pub exit_status: Option<u32>,
        pub exit_signal: Option<String>,
    }

    impl Session {
        /// Connects and authenticates. A failure carries the host key seen, if the server
        /// presented one (worth showing when it changed).
        pub(crate) async fn open(t: &SshTarget, secret: Option<&Secret>) -> Result<Session, (Message, Option<String>)> {
            let target = host_port(&t.host, t.port);
            let seen = Arc::new(Mutex::new(None::<String>));
            let handler = KeyCheck { expected: t.host_key_sha256.clone(), seen: seen.clone() };
            let connected = client::connect(Arc::new(config()), (t.host.trim(), t.port), handler).await;
            let seen_key = seen.lock().ok().and_then(|g| g.clone());
            let mut handle = match connected {
                Ok(h) => h,
                Err(e) => {
                    if let (Some(expected), Some(got)) = (&t.host_key_sha256, &seen_key)
                        && !same_fingerprint(expected, got)
                    {
                        return Err((
                            Message::new(
                                format!(
                                    "{target} 的主机密钥已变化：收到 {got}，应为 {expected}；未发送凭据（若服务器确已更换，请更新记录的指纹）"
                                ),
                                format!(
                                    "the host key of {target} changed: presented {got}, expected {expected}; no \
                                     credentials were sent (if the server was replaced, update the stored fingerprint)"
                                ),
                            ),
                            seen_key,
                        ));
                    }
                    let m = match &e {
                        russh::Error::IO(io) => crate::node::connect_failure(&target, io),
                        other => {
                            let why = describe(other);
                            Message::new(
                                format!("与 {target} 的 SSH 握手失败：{why}"),
                                format!("the SSH handshake with {target} failed: {why}"),
                            )
                        }
                    };
                    return Err((m, seen_key));
                }
            };
            let host_key = seen_key.clone().unwrap_or_default();
            let fail = |m: Message| (m, seen_key.clone());
            let user = secret
                .and_then(|s| s.username.clone())
                .or_else(|| t.username.clone())
                .ok_or_else(|| fail(Message::new("未指定 SSH 用户名", "no SSH user name given")))?;
            let password = secret.and_then(|s| s.password.clone());
            let incomplete = |e: russh::Error| {
                let why = describe(&e);
                fail(Message::new(
                    format!("SSH 认证未完成：{why}"),
                    format!("SSH authentication did not complete: {why}"),
                ))
            };
            let denied = |how_zh: &str, how_en: &str| {
                fail(Message::new(
                    format!("{target} 拒绝了用户 {user} 的{how_zh}登录"),
                    format!("{target} refused the {how_en} login of user {user}"),
                ))
            };

            let mut key_refused = false;
            if let Some(pem) = secret.and_then(|s| s.private_key.as_deref()) {
                let key = russh::keys::decode_secret_key(pem, None)
                    .or_else(|e| match &password {
                        Some(pw) => russh::keys::decode_secret_key(pem, Some(pw)),
                        None => Err(e),
                    })
                    .map_err(|e| {
                        fail(Message::new(
                            format!("无法读取 SSH 私钥（格式不对，或口令错误）：{e}"),
                            format!("cannot read the SSH private key (bad format or wrong passphrase): {e}"),
                        ))
                    })?;
                let hash = if matches!(key.algorithm(), russh::keys::Algorithm::Rsa { .. }) {
                    handle.best_supported_rsa_hash().await.ok().flatten().flatten()
                } else {
                    None
                };
                let r = handle
                    .authenticate_publickey(user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                    .await
                    .map_err(incomplete)?;
                match r {
                    AuthResult::Success => return Ok(Session { handle, host_key }),
                    AuthResult::Failure { .. } => key_refused = true,
                }
            }
            let Some(password) = password else {
                return Err(if key_refused {
                    denied("密钥", "key")
                } else {
                    fail(Message::new("没有 SSH 凭据（密码或私钥）", "no SSH credentials (password or private key)"))
                });
            };
            let r = handle.authenticate_password(user.clone(), password.clone()).await.map_err(incomplete)?;
            let remaining = match r {
                AuthResult::Success => return Ok(Session { handle, host_key }),
                AuthResult::Failure { remaining_methods, .. } => remaining_methods,
            };
            if !remaining.contains(&MethodKind::KeyboardInteractive) {
                return Err(denied("密码", "password"));
            }
            let mut reply =
                handle.authenticate_keyboard_interactive_start(user.clone(), None).await.map_err(incomplete)?;
            for _ in 0..3 {
                match reply {
                    KeyboardInteractiveAuthResponse::Success => return Ok(Session { handle, host_key }),
                    KeyboardInteractiveAuthResponse::Failure { .. } => return Err(denied("密码", "password")),
                    KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                        let answers = prompts.iter().map(|_| password.clone()).collect();
                        reply = handle.authenticate_keyboard_interactive_respond(answers).await.map_err(incomplete)?;
                    }
                }
            }
            Err(denied("密码", "password"))
        }

        /// Runs one command in its own channel and collects its output until the channel closes.
        pub(crate) async fn exec(&self, command: &str, max: usize) -> Result<Exec, Message> {
            let short: String = command.chars().take(80).collect();
            let mut ch = self.handle.channel_open_session().await.map_err(|e| {
                let why = describe(&e);
                Message::new(format!("无法打开 SSH 通道：{why}"), format!("cannot open an SSH channel: {why}"))
            })?;
            ch.exec(true, command).await.map_err(|e| {
                let why = describe(&e);
                Message::new(format!("无法执行 `{short}`：{why}"), format!("cannot run `{short}`: {why}"))
            })?;
            let mut out = Exec { stdout: Vec::new(), stderr: Vec::new(), exit_status: None, exit_signal: None };
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        if out.stdout.len() + data.len() > max {
                            let _ = ch.close().await;
                            return Err(Message::new(
                                format!("`{short}` 的输出超过 {} KiB", max / 1024),
                                format!("`{short}` printed more than {} KiB", max / 1024),
                            ));
                        }
                        out.stdout.extend_from_slice(&data);
                    }
                    ChannelMsg::ExtendedData { data, .. } if out.stderr.len() < 64 * 1024 => {
                        out.stderr.extend_from_slice(&data);
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => out.exit_signal = Some(format!("{signal_name:?}")),
                    ChannelMsg::Failure => {
                        return Err(Message::new(
                            format!("服务器拒绝执行 `{short}`"),
                            format!("the server refused to run `{short}`"),
                        ));
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            Ok(out)
        }

        pub(crate) async fn close(self) {
            let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
        }
    }
}

/// Quotes a string for a POSIX shell: `'…'`, with embedded quotes as `'\''`.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    #[test]
    fn definitions() {
        let p: SshProbe = serde_json::from_value(serde_json::json!({"host": "10.0.0.1", "command": "uptime"})).unwrap();
        assert_eq!((p.port, p.expect_exit), (22, Some(0)));
        assert!(p.validate().is_ok());
        let any: SshProbe =
            serde_json::from_value(serde_json::json!({"host": "h", "command": "x", "expect_exit": null})).unwrap();
        assert_eq!(any.expect_exit, None);
        let back: SshProbe = serde_json::from_value(serde_json::to_value(&any).unwrap()).unwrap();
        assert_eq!(back.expect_exit, None, "null survives a round trip");
        let neither: SshProbe = serde_json::from_value(serde_json::json!({"host": "h"})).unwrap();
        assert!(neither.validate().unwrap_err().en.contains("either command"));
        let mut both = p.clone();
        both.host_metrics = true;
        assert!(both.validate().is_err());
        let mut re = p.clone();
        re.stdout_regex = Some("(unclosed".into());
        assert!(re.validate().unwrap_err().en.contains("invalid regular expression"));
        let mut fp = p.clone();
        fp.host_key_sha256 = Some("SHA256:short".into());
        assert!(fp.validate().is_err());
        fp.host_key_sha256 = Some("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s".into());
        assert!(fp.validate().is_ok());
    }

    #[test]
    fn host_metrics_output_is_parsed() {
        let out = "@@loadavg\n0.50 0.40 0.30 1/183 24717\n@@meminfo\nMemTotal:       1000 kB\nMemFree: 100 kB\n\
                   MemAvailable:    250 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n@@cpus\n2\n@@uptime\n7200.5 100.0\n\
                   @@stat1\ncpu  100 0 100 700 100 0 0 0 0 0\n@@df\n\
                   Filesystem Type 1024-blocks Used Available Capacity Mounted on\n\
                   /dev/vda ext4 1000 700 200 78% /\n\
                   tmpfs tmpfs 100 0 100 0% /dev/shm\n\
                   /dev/vdb xfs 100 50 50 50% /data/备份 盘\n\
                   @@stat2\ncpu  150 0 150 750 150 0 0 0 0 0\n@@end\n";
        let m = parse_host_metrics(out);
        let r = m.readings(&[]);
        let get = |k: &str| r.iter().find(|x| x.key == k).map(|x| x.value.clone());
        assert_eq!(get("load.1"), Some(Value::Num(0.5)));
        assert_eq!(get("mem.used_pct"), Some(Value::Num(75.0)));
        assert_eq!(get("cpu.cores"), Some(Value::Num(2.0)));
        assert_eq!(get("cpu.busy_pct"), Some(Value::Num(50.0)), "100 busy of 200");
        assert_eq!(get("disk./.used_pct"), Some(Value::Num(77.78)));
        assert_eq!(get("disk./data/备份 盘.used_pct"), Some(Value::Num(50.0)));
        assert_eq!(get("uptime_h"), Some(Value::Num(2.0)));
        assert_eq!(get("swap.used_pct"), None, "no swap");
        assert!(!r.iter().any(|x| x.key.contains("/dev/shm")));
        assert!(host_metrics_script(1500).contains("sleep 1.500"));
        assert!(!host_metrics_script(0).contains("sleep"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/data/备份"), "'/data/备份'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
