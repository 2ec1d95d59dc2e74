//! The SSH client: one connection, password authentication (keyboard-interactive as the fallback
//! many switches need), one exec channel per command, the whole pull under one timeout.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, KeyboardInteractiveAuthResponse};
use russh::keys::{HashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, MethodKind, Preferred, cipher, kex, mac};

use crate::clean::{clean_output, waiting_prompt};
use crate::{MAX_OUTPUT, Pulled, Target, VendorCommands};

/// Pulls the running (and, where the family has a command for it, the saved) configuration.
///
/// Every failure is a sentence an operator can act on: unreachable, refused authentication, host
/// key changed, command refused, output too large, timed out (naming the step that hung).
pub async fn pull(target: &Target, commands: &VendorCommands, timeout: Duration) -> Result<Pulled, String> {
    let step = Mutex::new(format!("connecting to {}:{}", target.host, target.port));
    match tokio::time::timeout(timeout, pull_inner(target, commands, &step)).await {
        Ok(r) => r,
        Err(_) => {
            let step = step.lock().map(|s| s.clone()).unwrap_or_default();
            Err(format!("timed out after {} s while {step}", timeout.as_secs_f32()))
        }
    }
}

fn set_step(step: &Mutex<String>, s: String) {
    if let Ok(mut g) = step.lock() {
        *g = s;
    }
}

/// Remembers the key the server presented and refuses one that differs from the expected.
struct KeyCheck {
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

/// Compares fingerprints written with or without the `SHA256:` prefix and base64 padding.
fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_start_matches("SHA256:").trim_end_matches('=').to_string();
    norm(a) == norm(b)
}

fn config() -> client::Config {
    let mut kexes: Vec<kex::Name> = Preferred::DEFAULT.kex.to_vec();
    // Legacy key exchanges last: used only when a device offers nothing better.
    let ext = kexes.iter().position(|k| k.as_ref().starts_with("ext-info") || k.as_ref().starts_with("kex-strict"));
    let at = ext.unwrap_or(kexes.len());
    for (i, k) in
        [kex::ECDH_SHA2_NISTP256, kex::ECDH_SHA2_NISTP384, kex::ECDH_SHA2_NISTP521, kex::DH_G14_SHA1, kex::DH_GEX_SHA1]
            .into_iter()
            .enumerate()
    {
        kexes.insert(at + i, k);
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

async fn pull_inner(target: &Target, commands: &VendorCommands, step: &Mutex<String>) -> Result<Pulled, String> {
    let seen = Arc::new(Mutex::new(None::<String>));
    let handler = KeyCheck { expected: target.host_key_sha256.clone(), seen: seen.clone() };
    let addr = (target.host.as_str(), target.port);
    let connected = client::connect(Arc::new(config()), addr, handler).await;
    let seen_key = seen.lock().ok().and_then(|g| g.clone());
    let mut session = match connected {
        Ok(s) => s,
        Err(e) => {
            if let (Some(expected), Some(got)) = (&target.host_key_sha256, &seen_key)
                && !same_fingerprint(expected, got)
            {
                return Err(format!(
                    "host key changed: {}:{} presented {got}, expected {expected}; refusing to send the \
                     password (if the device was replaced, forget its host key in the target settings)",
                    target.host, target.port
                ));
            }
            return Err(format!("cannot connect to {}:{}: {}", target.host, target.port, describe(&e)));
        }
    };
    let host_key = seen_key.ok_or("the server presented no host key")?;

    set_step(step, format!("authenticating as {}", target.username));
    authenticate(&mut session, target).await?;

    for cmd in &commands.pre {
        set_step(step, format!("running `{cmd}`"));
        // Paging off: best effort, output discarded (see the crate documentation).
        let _ = run(&session, cmd).await;
    }
    set_step(step, format!("running `{}`", commands.running));
    let out = run(&session, &commands.running).await?;
    let running = clean_output(&out.stdout);
    if let Some(msg) = refusal(&running) {
        return Err(format!("the device refused `{}`: {msg}", commands.running));
    }
    if running.trim().is_empty() {
        let why = match out.exit_status {
            Some(s) if s != 0 => format!(" (exit status {s}{})", stderr_excerpt(&out.stderr)),
            _ => stderr_excerpt(&out.stderr),
        };
        return Err(format!("`{}` printed no configuration{why}", commands.running));
    }
    let saved = match &commands.saved {
        Some(cmd) => {
            set_step(step, format!("running `{cmd}`"));
            let out = run(&session, cmd).await?;
            let text = clean_output(&out.stdout);
            // A device without a saved configuration, or that refuses the command, tells nothing.
            (out.exit_status.unwrap_or(0) == 0 && refusal(&text).is_none() && !text.trim().is_empty()).then_some(text)
        }
        None => None,
    };
    let _ = session.disconnect(Disconnect::ByApplication, "", "en").await;
    Ok(Pulled { running, saved, host_key_sha256: host_key })
}

async fn authenticate(session: &mut client::Handle<KeyCheck>, target: &Target) -> Result<(), String> {
    let denied = || {
        format!(
            "authentication failed for user {:?} on {}:{} (wrong user name or password?)",
            target.username, target.host, target.port
        )
    };
    let r = session
        .authenticate_password(target.username.clone(), target.password.clone())
        .await
        .map_err(|e| format!("authentication did not complete: {}", describe(&e)))?;
    let remaining = match r {
        russh::client::AuthResult::Success => return Ok(()),
        russh::client::AuthResult::Failure { remaining_methods, .. } => remaining_methods,
    };
    if !remaining.contains(&MethodKind::KeyboardInteractive) {
        return Err(denied());
    }
    // Many switches (Cisco IOS, some VRP releases) offer only keyboard-interactive: answer each
    // prompt with the password, for a few rounds at most.
    let mut reply = session
        .authenticate_keyboard_interactive_start(target.username.clone(), None)
        .await
        .map_err(|e| format!("authentication did not complete: {}", describe(&e)))?;
    for _ in 0..3 {
        match reply {
            KeyboardInteractiveAuthResponse::Success => return Ok(()),
            KeyboardInteractiveAuthResponse::Failure { .. } => return Err(denied()),
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| target.password.clone()).collect();
                reply = session
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(|e| format!("authentication did not complete: {}", describe(&e)))?;
            }
        }
    }
    Err(denied())
}

struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_status: Option<u32>,
}

/// Runs one command in its own exec channel and collects its output until the channel closes.
async fn run(session: &client::Handle<KeyCheck>, command: &str) -> Result<Output, String> {
    let mut ch =
        session.channel_open_session().await.map_err(|e| format!("cannot open a channel: {}", describe(&e)))?;
    ch.exec(true, command).await.map_err(|e| format!("cannot run `{command}`: {}", describe(&e)))?;
    let mut out = Output { stdout: Vec::new(), stderr: Vec::new(), exit_status: None };
    let mut answered: Option<usize> = None;
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if out.stdout.len() + data.len() > MAX_OUTPUT {
                    let _ = ch.close().await;
                    return Err(format!("`{command}` printed more than {} MiB", MAX_OUTPUT / (1024 * 1024)));
                }
                out.stdout.extend_from_slice(&data);
                // A device that pages despite the `pre` commands waits for a key: press space.
                if let Some(at) = waiting_prompt(&out.stdout)
                    && answered.is_none_or(|a| at > a)
                {
                    answered = Some(at);
                    let _ = ch.data(&b" "[..]).await;
                }
            }
            ChannelMsg::ExtendedData { data, .. } if out.stderr.len() < 64 * 1024 => {
                out.stderr.extend_from_slice(&data);
            }
            ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
            ChannelMsg::Failure => return Err(format!("the device refused to run `{command}`")),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The first line of an error the CLI printed instead of a configuration.
fn refusal(text: &str) -> Option<String> {
    let first = text.lines().find(|l| !l.trim().is_empty())?.trim();
    let markers = ["Error:", "% Invalid", "% Unknown", "% Incomplete", "% Ambiguous", "Unrecognized command"];
    markers.iter().any(|m| first.starts_with(m) || first.contains("Unrecognized command")).then(|| first.to_string())
}

fn stderr_excerpt(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr);
    let s = s.trim();
    if s.is_empty() {
        String::new()
    } else {
        let short: String = s.chars().take(200).collect();
        format!(": {short}")
    }
}

fn describe(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        russh::Error::Disconnect => "the server closed the connection".into(),
        russh::Error::NoCommonAlgo { kind, ours, theirs } => {
            format!("no common {kind:?} algorithm (ours: {}, device: {})", ours.join(","), theirs.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_compare_loosely() {
        assert!(same_fingerprint("SHA256:abcDEF", "SHA256:abcDEF"));
        assert!(same_fingerprint("abcDEF=", "SHA256:abcDEF"));
        assert!(!same_fingerprint("SHA256:abcDEF", "SHA256:abcDEG"));
    }

    #[test]
    fn refusals_are_recognised() {
        assert!(refusal("Error: Unrecognized command found at '^' position.\n").is_some());
        assert!(refusal("% Invalid input detected at '^' marker.\n").is_some());
        assert!(refusal("\nhostname R1\n").is_none());
    }

    #[test]
    fn legacy_algorithms_come_last() {
        let c = config();
        let kex: Vec<&str> = c.preferred.kex.iter().map(|k| k.as_ref()).collect();
        assert_eq!(kex[0], Preferred::DEFAULT.kex[0].as_ref());
        let g14 = kex.iter().position(|k| *k == "diffie-hellman-group14-sha1").unwrap();
        let curve = kex.iter().position(|k| *k == "curve25519-sha256").unwrap();
        assert!(curve < g14);
        let ext = kex.iter().position(|k| k.starts_with("ext-info")).unwrap();
        assert!(g14 < ext, "extension pseudo-algorithms stay at the end");
        assert_eq!(c.preferred.mac.last().map(|m| m.as_ref()), Some("hmac-sha1"));
    }

    #[tokio::test]
    async fn unreachable_fails_fast_with_a_clear_message() {
        // A port nobody listens on (bound then dropped).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let t = Target {
            host: "127.0.0.1".into(),
            port,
            username: "u".into(),
            password: "p".into(),
            host_key_sha256: None,
        };
        let v = crate::vendor("huawei_vrp").unwrap();
        let e = pull(&t, v, Duration::from_secs(5)).await.unwrap_err();
        assert!(e.starts_with(&format!("cannot connect to 127.0.0.1:{port}")), "{e}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_naming_the_step() {
        // Accepts TCP but never speaks SSH.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let keep = tokio::spawn(async move {
            let (_sock, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let t = Target {
            host: "127.0.0.1".into(),
            port,
            username: "u".into(),
            password: "p".into(),
            host_key_sha256: None,
        };
        let started = std::time::Instant::now();
        let e = pull(&t, crate::vendor("cisco_ios").unwrap(), Duration::from_millis(500)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(e.starts_with("timed out after 0.5 s while connecting to 127.0.0.1"), "{e}");
        keep.abort();
    }
}
