//! Comparing configurations: a line diff between two versions, and "does the saved configuration
//! differ from the running one" with the lines that change by themselves (timestamps, NTP drift)
//! left out.

use std::time::Duration;

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

/// Whether a line is the same in both, only in the old text, or only in the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffTag {
    Equal,
    Delete,
    Insert,
}

/// One line of a diff. Line numbers start at 1; `old_line` is absent for an insertion, `new_line`
/// for a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub tag: DiffTag,
    pub old_line: Option<usize>,
    pub new_line: Option<usize>,
    /// The line without its line ending.
    pub text: String,
}

/// A configuration diff is computed for a person reading it: past this much CPU time the diff
/// algorithm settles for a correct but longer diff.
const DIFF_DEADLINE: Duration = Duration::from_secs(2);

fn lines_of(diff: &TextDiff<'_, '_, str>, ops: &[similar::DiffOp]) -> Vec<DiffLine> {
    let mut out = Vec::new();
    for op in ops {
        for c in diff.iter_changes(op) {
            out.push(DiffLine {
                tag: match c.tag() {
                    ChangeTag::Equal => DiffTag::Equal,
                    ChangeTag::Delete => DiffTag::Delete,
                    ChangeTag::Insert => DiffTag::Insert,
                },
                old_line: c.old_index().map(|i| i + 1),
                new_line: c.new_index().map(|i| i + 1),
                text: c.value().trim_end_matches(['\n', '\r']).to_string(),
            });
        }
    }
    out
}

/// The text with a final newline, so that a missing one on the last line is no difference.
fn terminated(s: &str) -> std::borrow::Cow<'_, str> {
    if s.is_empty() || s.ends_with('\n') { s.into() } else { format!("{s}\n").into() }
}

/// Every line of `a` and `b`, in order, each tagged equal, deleted (only in `a`) or inserted (only
/// in `b`).
pub fn diff(a: &str, b: &str) -> Vec<DiffLine> {
    let (a, b) = (terminated(a), terminated(b));
    let d = TextDiff::configure().timeout(DIFF_DEADLINE).diff_lines(a.as_ref(), b.as_ref());
    lines_of(&d, d.ops())
}

/// Only the changed lines with `context` equal lines around each change (what a reviewer reads);
/// a jump in the line numbers marks the lines left out. Empty when the texts are equal.
pub fn diff_with_context(a: &str, b: &str, context: usize) -> Vec<DiffLine> {
    let (a, b) = (terminated(a), terminated(b));
    let d = TextDiff::configure().timeout(DIFF_DEADLINE).diff_lines(a.as_ref(), b.as_ref());
    let groups = d.grouped_ops(context);
    groups.iter().flat_map(|g| lines_of(&d, g)).collect()
}

/// Whether the saved configuration differs from the running one once the lines that change by
/// themselves are left out ([`is_volatile_line`]), as are blank lines and trailing spaces.
pub fn differs_ignoring_volatile(running: &str, saved: &str) -> bool {
    fn significant(text: &str) -> impl Iterator<Item = &str> {
        text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty() && !is_volatile_line(l))
    }
    !significant(running).eq(significant(saved))
}

const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MONTHS: &[&str] = &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/// A line that changes without anyone changing the configuration: Cisco's `! Last configuration
/// change at …`, `! NVRAM config last updated at …`, `ntp clock-period …`, `Building
/// configuration...`, `Current configuration : N bytes`; Huawei's `!Last configuration was updated
/// at …` / `…saved at …`; any comment line (`!`, `#`) holding a time of day; a line that is only a
/// timestamp.
pub fn is_volatile_line(line: &str) -> bool {
    let t = line.trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("ntp clock-period")
        || lower.starts_with("building configuration")
        || lower.starts_with("current configuration")
        || (lower.starts_with("using ") && lower.contains(" out of ") && lower.ends_with("bytes"))
    {
        return true;
    }
    if t.starts_with('!') || t.starts_with('#') {
        return has_time_of_day(t)
            || lower.contains("last configuration")
            || lower.contains("nvram config last updated")
            || lower.contains("no configuration change since");
    }
    is_bare_timestamp(t)
}

/// `hh:mm:ss` (or `h:mm:ss`) somewhere in the text.
fn has_time_of_day(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len()).any(|i| {
        let d = |j: usize| b.get(j).is_some_and(u8::is_ascii_digit);
        let c = |j: usize| b.get(j) == Some(&b':');
        // hh:mm:ss starting at i, or h:mm:ss.
        (d(i) && d(i + 1) && c(i + 2) && d(i + 3) && d(i + 4) && c(i + 5) && d(i + 6) && d(i + 7))
            || (d(i) && c(i + 1) && d(i + 2) && d(i + 3) && c(i + 4) && d(i + 5) && d(i + 6))
    })
}

/// A line made only of a date and time: weekday and month names, numbers, time-zone abbreviations
/// (`*10:01:02.123 UTC Mon Mar 1 2024`, `2024-03-01 10:01:02+08:00`, `Time: 2024-03-01 10:01:02`).
fn is_bare_timestamp(t: &str) -> bool {
    if !has_time_of_day(t) {
        return false;
    }
    t.split_whitespace().enumerate().all(|(i, tok)| {
        let w = tok.trim_start_matches('*').trim_end_matches([',', '.']);
        let lw = w.to_ascii_lowercase();
        (i == 0 && (lw == "time:" || lw == "date:"))
            || WEEKDAYS.iter().any(|d| lw.starts_with(d) && lw.len() <= 9)
            || MONTHS.iter().any(|m| lw.starts_with(m) && lw.len() <= 9)
            || (!w.is_empty() && w.chars().all(|c| c.is_ascii_digit() || ":-./+".contains(c)))
            || (w.len() <= 5 && w.chars().all(|c| c.is_ascii_uppercase()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_changed_lines_with_numbers() {
        let a = "sysname A\ninterface G0/0/1\n description uplink\n#\nreturn\n";
        let b = "sysname A\ninterface G0/0/1\n description core uplink\n#\nreturn\n";
        let d = diff(a, b);
        assert_eq!(d.len(), 6);
        let del: Vec<_> = d.iter().filter(|l| l.tag == DiffTag::Delete).collect();
        let ins: Vec<_> = d.iter().filter(|l| l.tag == DiffTag::Insert).collect();
        assert_eq!(del.len(), 1);
        assert_eq!(ins.len(), 1);
        assert_eq!((del[0].text.as_str(), del[0].old_line, del[0].new_line), (" description uplink", Some(3), None));
        assert_eq!(
            (ins[0].text.as_str(), ins[0].old_line, ins[0].new_line),
            (" description core uplink", None, Some(3))
        );
        assert_eq!(
            d[0],
            DiffLine { tag: DiffTag::Equal, old_line: Some(1), new_line: Some(1), text: "sysname A".into() }
        );
    }

    #[test]
    fn diff_of_equal_texts_has_no_changes() {
        let a = "hostname R1\n!\nend\n";
        assert!(diff(a, a).iter().all(|l| l.tag == DiffTag::Equal));
        assert!(diff_with_context(a, a, 3).is_empty());
        assert!(diff("", "").is_empty());
    }

    #[test]
    fn context_leaves_out_far_lines() {
        let a: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let b = a.replace("line 50\n", "line fifty\n");
        let d = diff_with_context(&a, &b, 2);
        // 2 before, the change (delete + insert), 2 after.
        assert_eq!(d.len(), 6, "{d:?}");
        assert_eq!(d[0].old_line, Some(48));
        assert_eq!(d.last().unwrap().new_line, Some(52));
    }

    #[test]
    fn insertions_and_deletions_at_the_ends() {
        let d = diff("a\n", "a\nb\n");
        assert_eq!(d[1], DiffLine { tag: DiffTag::Insert, old_line: None, new_line: Some(2), text: "b".into() });
        let d = diff("x\na\n", "a\n");
        assert_eq!(d[0], DiffLine { tag: DiffTag::Delete, old_line: Some(1), new_line: None, text: "x".into() });
        // A last line without newline compares equal to the same line with one.
        assert!(diff("a\nb", "a\nb\n").iter().all(|l| l.tag == DiffTag::Equal));
    }

    #[test]
    fn volatile_lines() {
        for l in [
            "! Last configuration change at 10:12:03 UTC Mon Mar 1 2024 by admin",
            "! NVRAM config last updated at 09:00:00 UTC Fri Feb 2 2024",
            "! No configuration change since last restart",
            "ntp clock-period 17179873",
            "Building configuration...",
            "Current configuration : 1234 bytes",
            "Using 1234 out of 65536 bytes",
            "!Last configuration was updated at 2024-03-01 10:12:03+08:00",
            "!Last configuration was saved at 2024-03-01 10:12:03+08:00",
            "# generated 2024-03-01 10:12:03",
            "*10:01:02.123 UTC Mon Mar 1 2024",
            "2024-03-01 10:01:02+08:00",
            "Time: 2024-03-01 9:01:02",
        ] {
            assert!(is_volatile_line(l), "{l}");
        }
        for l in [
            "hostname R1",
            "!",
            "#",
            " description link at 10:00:00 to core",
            "interface GigabitEthernet0/0/1",
            "clock timezone BJ add 08:00:00",
            "!Software Version V200R019C10SPC500",
            " ntp server 10.0.0.1",
            "",
        ] {
            assert!(!is_volatile_line(l), "{l}");
        }
    }

    #[test]
    fn saved_versus_running() {
        let running = "Building configuration...\n\nCurrent configuration : 120 bytes\n!\n! Last configuration change at 10:12:03 UTC Mon Mar 1 2024\n!\nhostname R1\nntp clock-period 17179873\n!\nend\n";
        let saved = "Using 98 out of 65536 bytes\n!\n! NVRAM config last updated at 09:00:00 UTC Fri Feb 2 2024\n!\nhostname R1\nntp clock-period 17179001\n!\nend\n";
        assert!(!differs_ignoring_volatile(running, saved));
        let changed = saved.replace("hostname R1", "hostname R2");
        assert!(differs_ignoring_volatile(running, &changed));
        let extra = saved.replace("!\nend", "!\ninterface Gi0/1\n shutdown\n!\nend");
        assert!(differs_ignoring_volatile(running, &extra));
        // Huawei: only the timestamp comment differs, plus blank lines and trailing spaces.
        let hw_run = "!Software Version V200R019C10SPC500\n!Last configuration was updated at 2024-03-01 10:12:03+08:00\n#\nsysname SW1  \n#\nreturn\n";
        let hw_saved = "!Software Version V200R019C10SPC500\n!Last configuration was saved at 2024-02-01 08:00:00+08:00\n#\n\nsysname SW1\n#\nreturn\n";
        assert!(!differs_ignoring_volatile(hw_run, hw_saved));
        assert!(differs_ignoring_volatile(hw_run, &hw_saved.replace("SW1", "SW2")));
    }
}
