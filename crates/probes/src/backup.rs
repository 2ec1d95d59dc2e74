//! "Backup file present": the newest file matching a pattern in a directory, here or on a remote
//! host over SSH; how old it is, how large, and optionally its SHA-256.
//!
//! The usual daily check is "yesterday's backup is there": `since: "yesterday"` requires the newest
//! file to be modified after 00:00 of the previous day in the site's time zone (`utc_offset_minutes`,
//! default +08:00); `max_age_h` bounds its age in hours. Without either, 26 hours apply (a daily
//! backup plus slack for a job that runs late).
//!
//! Patterns match file names as the shell and `find -name` do (`*`, `?`, `[a-z]`, `[!0-9]`), in
//! any script: `数据库备份_*.dmp` works. `recursive` looks into subdirectories (16 levels at most).
//!
//! Remote: one SSH session (see [`crate::ssh`]) runs `find … -exec stat -c '%Y %s %n'` (GNU or
//! BusyBox) and `sha256sum`; directory and pattern are quoted for the shell, never interpreted.
//!
//! Readings: `files` (how many match), `file` (the newest, relative to `dir`), `size_bytes`,
//! `age_h`, `mtime` (local time of the site), `sha256`; remote also `host_key`.

// Parts used only by the feature-gated client stay compiled (and tested) without it.
#![cfg_attr(not(feature = "ssh"), allow(dead_code))]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::node::joined;
use crate::ssh::SshTarget;
use crate::{Message, Outcome, Reading, Secret};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFileProbe {
    /// An absolute directory, on this host or on the `ssh` host.
    pub dir: String,
    /// File name pattern (default `*`).
    #[serde(default = "default_pattern")]
    pub pattern: String,
    #[serde(default)]
    pub recursive: bool,
    /// Look on this host over SSH instead of locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_h: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Since>,
    /// The site's time zone for `since` and the `mtime` reading, in minutes east of UTC.
    #[serde(default = "default_offset")]
    pub utc_offset_minutes: i32,
    /// Smallest acceptable size (default 1: an empty file is a failed backup).
    #[serde(default = "default_min_bytes")]
    pub min_bytes: u64,
    /// Compute the SHA-256 of the newest file (reads it whole: mind the time-out for large files).
    #[serde(default)]
    pub sha256: bool,
}

fn default_pattern() -> String {
    "*".into()
}
fn default_offset() -> i32 {
    480
}
fn default_min_bytes() -> u64 {
    1
}

/// The newest file must be modified after 00:00 (site time) of this day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Since {
    Today,
    Yesterday,
}

/// When neither `max_age_h` nor `since` is given.
pub const DEFAULT_MAX_AGE_H: f64 = 26.0;
const MAX_DEPTH: usize = 16;
const MAX_ENTRIES: usize = 200_000;

impl BackupFileProbe {
    pub fn validate(&self) -> Result<(), Message> {
        if !self.dir.starts_with('/') {
            return Err(Message::new(
                format!("目录须为绝对路径：{:?}", self.dir),
                format!("the directory must be an absolute path: {:?}", self.dir),
            ));
        }
        if self.dir.contains('\0') || self.pattern.contains('\0') {
            return Err(Message::new(
                "目录或文件名模式含有 NUL 字符",
                "the directory or the pattern contains a NUL character",
            ));
        }
        if self.pattern.trim().is_empty() {
            return Err(Message::new("文件名模式为空", "the file name pattern is empty"));
        }
        if self.pattern.contains('/') {
            return Err(Message::new(
                format!("文件名模式只匹配文件名，不能含 /：{:?}（子目录请写进 dir，或用 recursive）", self.pattern),
                format!(
                    "the pattern matches file names and cannot contain /: {:?} (put directories in dir, or use recursive)",
                    self.pattern
                ),
            ));
        }
        if let Some(h) = self.max_age_h
            && (!h.is_finite() || h <= 0.0)
        {
            return Err(Message::new("max_age_h 须为正数", "max_age_h must be a positive number"));
        }
        if !(-720..=840).contains(&self.utc_offset_minutes) {
            return Err(Message::new(
                "utc_offset_minutes 须在 -720 到 840 之间",
                "utc_offset_minutes must be between -720 and 840",
            ));
        }
        if let Some(t) = &self.ssh {
            t.validate()?;
        }
        Ok(())
    }
}

/// One matching file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Found {
    /// Relative to the directory, `/`-separated.
    pub rel: String,
    /// Seconds since the epoch.
    pub mtime: f64,
    pub size: u64,
}

/// `fnmatch` without flags: `*`, `?`, bracket expressions with ranges and `!`/`^` negation,
/// `\` escaping the next character.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = bracket(&p, pi, n[ni])
                        && matched
                    {
                        pi = next;
                        ni += 1;
                        continue;
                    } else if bracket(&p, pi, n[ni]).is_none() && n[ni] == '[' {
                        // An unclosed bracket is a literal '['.
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() => {}
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether `c` matches the bracket expression at `p[start]`, and the index after it; `None` when
/// the bracket is not closed.
fn bracket(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// Sets the flag when dropped: a blocking task started by a probe stops when the probe is
/// abandoned (its time-out).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn cancelled() -> Message {
    Message::new("已取消", "cancelled")
}

fn list_local(dir: &Path, pattern: &str, recursive: bool, stop: &AtomicBool) -> Result<Vec<Found>, Message> {
    let shown = dir.display().to_string();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Message::new(format!("目录不存在：{shown}"), format!("the directory does not exist: {shown}")));
        }
        Err(e) => {
            return Err(Message::new(format!("无法访问目录 {shown}：{e}"), format!("cannot access {shown}: {e}")));
        }
        Ok(m) if !m.is_dir() => {
            return Err(Message::new(format!("不是目录：{shown}"), format!("not a directory: {shown}")));
        }
        Ok(_) => {}
    }
    let mut found = Vec::new();
    let mut seen = 0usize;
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(dir.to_path_buf(), String::new(), 0)];
    while let Some((path, prefix, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            // The top directory must be readable; a subdirectory that is not is skipped.
            Err(e) if depth == 0 => {
                return Err(Message::new(format!("无法读取目录 {shown}：{e}"), format!("cannot read {shown}: {e}")));
            }
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return Err(Message::new(
                    format!("{shown} 中的条目超过 {MAX_ENTRIES} 个，请缩小目录范围"),
                    format!("more than {MAX_ENTRIES} entries under {shown}: narrow the directory"),
                ));
            }
            if seen.is_multiple_of(1024) && stop.load(Ordering::Relaxed) {
                return Err(cancelled());
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if recursive && depth + 1 < MAX_DEPTH {
                    stack.push((entry.path(), rel, depth + 1));
                }
                continue;
            }
            if !glob_match(pattern, &name) {
                continue;
            }
            // Regular files, and symbolic links to them.
            let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
            if !meta.is_file() {
                continue;
            }
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            found.push(Found { rel, mtime, size: meta.len() });
        }
    }
    Ok(found)
}

fn sha256_local(path: &Path, stop: &AtomicBool) -> Result<String, Message> {
    use std::io::Read;
    let shown = path.display().to_string();
    let mut f = std::fs::File::open(path)
        .map_err(|e| Message::new(format!("无法读取 {shown}：{e}"), format!("cannot read {shown}: {e}")))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        let n = f
            .read(&mut buf)
            .map_err(|e| Message::new(format!("读取 {shown} 出错：{e}"), format!("reading {shown} failed: {e}")))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// 00:00 of today or yesterday at the given offset, in seconds since the epoch.
pub(crate) fn local_midnight(now: f64, offset_minutes: i32, since: Since) -> f64 {
    let off = f64::from(offset_minutes) * 60.0;
    let day = ((now + off) / 86_400.0).floor();
    let midnight = day * 86_400.0 - off;
    match since {
        Since::Today => midnight,
        Since::Yesterday => midnight - 86_400.0,
    }
}

/// `2026-03-14 01:00:00 +08:00`.
pub(crate) fn local_time(epoch_s: f64, offset_minutes: i32) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
    );
    let Ok(off) = time::UtcOffset::from_whole_seconds(offset_minutes * 60) else { return String::new() };
    time::OffsetDateTime::from_unix_timestamp(epoch_s.floor() as i64)
        .map(|t| t.to_offset(off).format(&fmt).unwrap_or_default())
        .unwrap_or_default()
}

pub async fn run(p: &BackupFileProbe, secret: Option<&Secret>) -> Outcome {
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    let mut readings = Vec::new();
    let listed = match &p.ssh {
        None => local(p).await,
        Some(t) => remote(p, t, secret, &mut readings).await,
    };
    let (newest, count, sha) = match listed {
        Ok(v) => v,
        Err(m) => return Outcome::fail(started.elapsed(), m, readings),
    };
    judge(p, started, newest, count, sha, readings, SystemTime::now())
}

/// The newest of the files (latest mtime; the greater name among equals).
fn newest(files: Vec<Found>) -> Option<Found> {
    files.into_iter().max_by(|a, b| a.mtime.total_cmp(&b.mtime).then_with(|| a.rel.cmp(&b.rel)))
}

/// The newest match, how many matched, and the newest one's SHA-256 if asked.
type Listed = (Option<Found>, usize, Option<String>);

/// The newest of the files, and what is wrong with it.
fn judge(
    p: &BackupFileProbe,
    started: Instant,
    newest: Option<Found>,
    count: usize,
    sha: Option<String>,
    mut readings: Vec<Reading>,
    now: SystemTime,
) -> Outcome {
    readings.push(Reading::num("files", count as f64));
    let Some(newest) = newest else {
        let where_ = match &p.ssh {
            Some(t) => format!("{}:{}", t.host, p.dir),
            None => p.dir.clone(),
        };
        return Outcome::fail(
            started.elapsed(),
            Message::new(
                format!("{where_} 中没有与 {} 匹配的文件", p.pattern),
                format!("no file matching {} in {where_}", p.pattern),
            ),
            readings,
        );
    };
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let age_h = (now - newest.mtime) / 3600.0;
    let when = local_time(newest.mtime, p.utc_offset_minutes);
    readings.push(Reading::text("file", newest.rel.clone()));
    readings.push(Reading::num("size_bytes", newest.size as f64));
    readings.push(Reading::num("age_h", crate::node::round2(age_h)));
    readings.push(Reading::text("mtime", when.clone()));
    if let Some(s) = sha {
        readings.push(Reading::text("sha256", s));
    }
    let mut problems = Vec::new();
    let max_age = p.max_age_h.or(if p.since.is_none() { Some(DEFAULT_MAX_AGE_H) } else { None });
    if let Some(max) = max_age
        && age_h > max
    {
        let h = crate::node::round2(age_h);
        problems.push(Message::new(
            format!("最新的备份 {} 已有 {h} 小时（{when}），超过 {max} 小时", newest.rel),
            format!("the newest backup {} is {h} h old ({when}), older than {max} h", newest.rel),
        ));
    }
    if let Some(since) = p.since {
        let limit = local_midnight(now, p.utc_offset_minutes, since);
        if newest.mtime < limit {
            let (zh, en) = match since {
                Since::Today => ("今天", "today"),
                Since::Yesterday => ("昨天", "yesterday"),
            };
            let at = local_time(limit, p.utc_offset_minutes);
            problems.push(Message::new(
                format!("最新的备份 {} 修改于 {when}，早于{zh} 0 时（{at}）", newest.rel),
                format!("the newest backup {} was modified at {when}, before 00:00 {en} ({at})", newest.rel),
            ));
        }
    }
    if newest.size < p.min_bytes {
        problems.push(Message::new(
            format!("最新的备份 {} 只有 {} 字节，小于 {} 字节", newest.rel, newest.size, p.min_bytes),
            format!("the newest backup {} has {} bytes, fewer than {}", newest.rel, newest.size, p.min_bytes),
        ));
    }
    match joined(problems) {
        None => Outcome::pass(started.elapsed(), readings),
        Some(m) => Outcome::fail(started.elapsed(), m, readings),
    }
}

async fn local(p: &BackupFileProbe) -> Result<Listed, Message> {
    let stop = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(stop.clone());
    let (dir, pattern, recursive, want_sha) = (PathBuf::from(&p.dir), p.pattern.clone(), p.recursive, p.sha256);
    let task = tokio::task::spawn_blocking(move || {
        let files = list_local(&dir, &pattern, recursive, &stop)?;
        let count = files.len();
        let newest = newest(files);
        let sha = match &newest {
            Some(f) if want_sha => Some(sha256_local(&dir.join(&f.rel), &stop)?),
            _ => None,
        };
        Ok((newest, count, sha))
    });
    task.await.map_err(|e| Message::new(format!("内部错误：{e}"), format!("internal error: {e}")))?
}

#[cfg(not(feature = "ssh"))]
async fn remote(
    _p: &BackupFileProbe,
    _t: &SshTarget,
    _secret: Option<&Secret>,
    _readings: &mut Vec<Reading>,
) -> Result<Listed, Message> {
    Err(Message::new(
        "此版本未包含 SSH（编译特性 ssh 未启用），无法检查远程备份",
        "this build has no SSH (cargo feature ssh is off): remote backups cannot be checked",
    ))
}

/// The listing command: a marker for a missing or unreadable directory, then `mtime size ./rel`
/// of the newest match and the count.
pub(crate) fn remote_script(p: &BackupFileProbe) -> String {
    use crate::ssh::shell_quote as q;
    let depth = if p.recursive { format!("-maxdepth {MAX_DEPTH}") } else { "-maxdepth 1".to_string() };
    format!(
        "export LC_ALL=C; d={dir}; [ -e \"$d\" ] || {{ echo @@nodir; exit 0; }}; [ -d \"$d\" ] || {{ echo @@notdir; exit 0; }}; \
         cd \"$d\" 2>/dev/null || {{ echo @@noaccess; exit 0; }}; \
         find . {depth} -type f -name {pat} -exec stat -L -c '%Y %s %n' {{}} + 2>/dev/null \
         | sort -n -r | awk 'NR==1{{print}} END{{print \"@@count \" NR+0}}'",
        dir = q(&p.dir),
        pat = q(&p.pattern),
    )
}

/// Parses the output of [`remote_script`]: the newest file (if any) and how many matched.
pub(crate) fn parse_remote(out: &str, dir: &str) -> Result<(Option<Found>, usize), Message> {
    let mut newest = None;
    let mut count = None;
    for line in out.lines() {
        match line.trim_end() {
            "@@nodir" => {
                return Err(Message::new(format!("目录不存在：{dir}"), format!("the directory does not exist: {dir}")));
            }
            "@@notdir" => return Err(Message::new(format!("不是目录：{dir}"), format!("not a directory: {dir}"))),
            "@@noaccess" => {
                return Err(Message::new(format!("无权进入目录：{dir}"), format!("no permission to enter {dir}")));
            }
            l if l.starts_with("@@count ") => count = l["@@count ".len()..].trim().parse().ok(),
            l if newest.is_none() && !l.is_empty() => {
                let mut it = l.splitn(3, ' ');
                if let (Some(m), Some(s), Some(name)) = (it.next(), it.next(), it.next())
                    && let (Ok(mtime), Ok(size)) = (m.parse::<f64>(), s.parse::<u64>())
                {
                    newest = Some(Found { rel: name.trim_start_matches("./").to_string(), mtime, size });
                }
            }
            _ => {}
        }
    }
    let count = count.ok_or_else(|| {
        let shown: String = out.chars().take(300).collect();
        Message::new(
            format!("远程列目录的输出无法识别（需要 find、stat、sort、awk）：{shown}"),
            format!("cannot understand the remote listing (needs find, stat, sort, awk): {shown}"),
        )
    })?;
    Ok((newest, count))
}

#[cfg(feature = "ssh")]
async fn remote(
    p: &BackupFileProbe,
    t: &SshTarget,
    secret: Option<&Secret>,
    readings: &mut Vec<Reading>,
) -> Result<Listed, Message> {
    use crate::ssh::imp::Session;
    let session = Session::open(t, secret).await.map_err(|(m, key)| {
        if let Some(k) = key {
            readings.push(Reading::text("host_key", k));
        }
        m
    })?;
    readings.push(Reading::text("host_key", session.host_key.clone()));
    let result = async {
        let out = session.exec(&remote_script(p), 64 * 1024).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (newest, count) = parse_remote(&text, &p.dir)?;
        let sha = match &newest {
            Some(f) if p.sha256 => {
                let cmd = format!(
                    "cd {} && sha256sum -- {}",
                    crate::ssh::shell_quote(&p.dir),
                    crate::ssh::shell_quote(&f.rel)
                );
                let out = session.exec(&cmd, 64 * 1024).await?;
                let text = String::from_utf8_lossy(&out.stdout);
                let sum = text.split_whitespace().next().unwrap_or("").to_string();
                if out.exit_status != Some(0) || sum.len() != 64 {
                    let err: String = String::from_utf8_lossy(&out.stderr).trim().chars().take(300).collect();
                    return Err(Message::new(
                        format!("远程计算 SHA-256 失败：{err}"),
                        format!("computing the SHA-256 remotely failed: {err}"),
                    ));
                }
                Some(sum)
            }
            _ => None,
        };
        Ok((newest, count, sha))
    }
    .await;
    session.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything.sql"));
        assert!(glob_match("db_*.sql.gz", "db_20260314.sql.gz"));
        assert!(!glob_match("db_*.sql.gz", "db_20260314.sql"));
        assert!(glob_match("数据库备份_*.dmp", "数据库备份_20260314.dmp"));
        assert!(glob_match("备份-????????.tar", "备份-20260314.tar"));
        assert!(!glob_match("备份-????????.tar", "备份-2026031.tar"));
        assert!(glob_match("log[0-9].txt", "log7.txt"));
        assert!(!glob_match("log[!0-9].txt", "log7.txt"));
        assert!(glob_match("log[!0-9].txt", "logx.txt"));
        assert!(glob_match("a[b", "a[b"));
        assert!(glob_match(r"a\*b", "a*b"));
        assert!(!glob_match(r"a\*b", "axb"));
        assert!(glob_match("*.*", "x.y"));
        assert!(glob_match("**a", "bba"));
    }

    #[test]
    fn midnights_and_local_time() {
        // 2026-03-14 01:30:00 +08:00 = 2026-03-13 17:30:00 UTC.
        let now = 1_773_423_000.0;
        assert_eq!(local_time(now, 480), "2026-03-14 01:30:00 +08:00");
        assert_eq!(local_time(local_midnight(now, 480, Since::Today), 480), "2026-03-14 00:00:00 +08:00");
        assert_eq!(local_time(local_midnight(now, 480, Since::Yesterday), 480), "2026-03-13 00:00:00 +08:00");
        assert_eq!(local_time(local_midnight(now, 0, Since::Today), 0), "2026-03-13 00:00:00 +00:00");
    }

    #[test]
    fn definitions() {
        let p: BackupFileProbe = serde_json::from_value(serde_json::json!({"dir": "/backup"})).unwrap();
        assert_eq!((p.pattern.as_str(), p.min_bytes, p.utc_offset_minutes), ("*", 1, 480));
        assert!(p.validate().is_ok());
        let mut q = p.clone();
        q.dir = "backup".into();
        assert!(q.validate().unwrap_err().en.contains("absolute"));
        let mut q = p.clone();
        q.pattern = "x/*.gz".into();
        assert!(q.validate().unwrap_err().en.contains("cannot contain /"));
        let mut q = p.clone();
        q.max_age_h = Some(0.0);
        assert!(q.validate().is_err());
        let mut q = p.clone();
        q.ssh = Some(SshTarget { host: "h".into(), port: 0, username: None, host_key_sha256: None });
        assert_eq!(q.validate().unwrap_err().en, "the port cannot be 0");
    }

    #[test]
    fn remote_listing_is_parsed_and_quoted() {
        let (f, n) = parse_remote("1773423000 2048 ./sub/备份 1.sql\n@@count 3\n", "/b").unwrap();
        assert_eq!(n, 3);
        assert_eq!(f.unwrap(), Found { rel: "sub/备份 1.sql".into(), mtime: 1_773_423_000.0, size: 2048 });
        assert_eq!(parse_remote("@@count 0\n", "/b").unwrap(), (None, 0));
        assert!(parse_remote("@@nodir\n", "/b").unwrap_err().en.contains("does not exist"));
        assert!(parse_remote("sh: find: not found\n", "/b").is_err());
        let p: BackupFileProbe =
            serde_json::from_value(serde_json::json!({"dir": "/data/it's", "pattern": "*.gz'; rm -rf /"})).unwrap();
        let s = remote_script(&p);
        assert!(s.contains(r"d='/data/it'\''s'"), "{s}");
        assert!(s.contains(r"-name '*.gz'\''; rm -rf /'"), "{s}");
    }
}
