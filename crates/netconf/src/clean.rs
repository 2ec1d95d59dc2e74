//! Turning what a device's CLI printed into the configuration text: paging prompts and the
//! backspace/escape sequences that erase them removed, line endings normalised.

/// Paging prompts of the supported families (Huawei VRP and H3C Comware `---- More ----`, Cisco
/// `--More--`). Answered with a space when they end the output, removed by [`clean_output`].
pub const MORE_PROMPTS: &[&str] = &["---- More ----", "--More--"];

/// Decodes the bytes (UTF-8, else GB18030 — Huawei and H3C devices write Chinese descriptions in
/// GBK), removes paging prompts, replays the cursor movements a terminal would (backspace,
/// `ESC [ n D`, carriage return), drops other control and escape sequences, trims trailing spaces
/// and surrounding blank lines, and ends the text with one newline (empty output stays empty).
pub fn clean_output(raw: &[u8]) -> String {
    let text = match std::str::from_utf8(raw) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => encoding_rs::GB18030.decode_without_bom_handling(raw).0,
    };
    let mut text = text.into_owned();
    for p in MORE_PROMPTS {
        if text.contains(p) {
            text = text.replace(p, "");
        }
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line: Vec<char> = Vec::new();
    let mut col = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                lines.push(finish(&mut line));
                col = 0;
            }
            '\r' => {
                // CR LF is a line end; a lone CR returns to the start of the line.
                if chars.peek() != Some(&'\n') {
                    col = 0;
                }
            }
            '\u{8}' => col = col.saturating_sub(1),
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    let mut param = String::new();
                    let mut fin = None;
                    for d in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&d) {
                            fin = Some(d);
                            break;
                        }
                        param.push(d);
                    }
                    let n = param.parse::<usize>().unwrap_or(1).max(1);
                    match fin {
                        Some('D') => col = col.saturating_sub(n),
                        Some('C') => col += n,
                        Some('K') => line.truncate(col),
                        _ => {}
                    }
                } else {
                    // A two-byte escape (ESC 7, ESC =, …): skip its second byte.
                    chars.next();
                }
            }
            '\t' => put(&mut line, &mut col, c),
            c if c.is_control() => {}
            c => put(&mut line, &mut col, c),
        }
    }
    if !line.is_empty() {
        lines.push(finish(&mut line));
    }
    let start = lines.iter().position(|l| !l.is_empty()).unwrap_or(lines.len());
    let end = lines.iter().rposition(|l| !l.is_empty()).map_or(start, |i| i + 1);
    let body = &lines[start..end];
    if body.is_empty() {
        return String::new();
    }
    let mut out = body.join("\n");
    out.push('\n');
    out
}

fn put(line: &mut Vec<char>, col: &mut usize, c: char) {
    while line.len() < *col {
        line.push(' ');
    }
    if *col < line.len() {
        line[*col] = c;
    } else {
        line.push(c);
    }
    *col += 1;
}

fn finish(line: &mut Vec<char>) -> String {
    let s: String = line.iter().collect();
    line.clear();
    s.trim_end().to_string()
}

/// Whether the output so far ends in a paging prompt the device waits on (nothing but spaces
/// after it). Returns the prompt's byte position, so that each prompt is answered once.
#[cfg_attr(not(feature = "ssh"), allow(dead_code))]
pub(crate) fn waiting_prompt(buf: &[u8]) -> Option<usize> {
    let tail_start = buf.len().saturating_sub(256);
    let tail = String::from_utf8_lossy(&buf[tail_start..]);
    let trimmed = tail.trim_end_matches([' ', '\t']);
    MORE_PROMPTS.iter().find_map(|p| {
        trimmed.ends_with(p).then(|| {
            let in_tail = trimmed.len() - p.len();
            // Byte position within the lossy string approximates the raw one; only used as a
            // "not answered yet" marker.
            tail_start + in_tail.min(buf.len() - tail_start)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huawei_paging_is_removed() {
        let raw = b"#\r\n sysname CORE-SW1\r\n#\r\n  ---- More ----\x1b[42D                                          \x1b[42Dinterface Vlanif10\r\n ip address 10.1.0.1 255.255.255.0\r\n#\r\nreturn\r\n";
        assert_eq!(
            clean_output(raw),
            "#\n sysname CORE-SW1\n#\ninterface Vlanif10\n ip address 10.1.0.1 255.255.255.0\n#\nreturn\n"
        );
    }

    #[test]
    fn h3c_paging_is_removed() {
        let raw = b" version 7.1.064\r\n---- More ----\x1b[16D                \x1b[16D sysname H3C-AGG\r\n";
        assert_eq!(clean_output(raw), " version 7.1.064\n sysname H3C-AGG\n");
    }

    #[test]
    fn cisco_paging_is_removed_and_indentation_kept() {
        let raw = b"interface Gi0/1\r\n --More-- \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08 shutdown\r\n!\r\nend\r\n";
        assert_eq!(clean_output(raw), "interface Gi0/1\n shutdown\n!\nend\n");
    }

    #[test]
    fn line_endings_blank_lines_and_controls() {
        assert_eq!(clean_output(b"\r\n\r\nhostname R1\r\n\r\n!\n\n\n"), "hostname R1\n\n!\n");
        assert_eq!(clean_output(b"a\rb\n"), "b\n", "a lone CR returns to the line start");
        assert_eq!(clean_output(b"x\x07y  \t \n"), "xy\n", "bell dropped, trailing blanks trimmed");
        assert_eq!(clean_output(b"abc\x1b[1Dd\x1b[K\n"), "abd\n");
        assert_eq!(clean_output(b"\x1b[?25lok\n"), "ok\n");
        assert_eq!(clean_output(b""), "");
        assert_eq!(clean_output(b"\r\n  \r\n"), "");
        assert_eq!(clean_output(b"no newline"), "no newline\n");
    }

    #[test]
    fn gbk_descriptions_are_decoded() {
        // "description 机房" in GBK.
        let (gbk, _, _) = encoding_rs::GBK.encode(" description 机房\r\n");
        assert_eq!(clean_output(&gbk), " description 机房\n");
        assert_eq!(clean_output(" description 机房\n".as_bytes()), " description 机房\n");
    }

    #[test]
    fn waiting_prompt_is_seen_once_at_the_end() {
        assert!(waiting_prompt(b"line\r\n  ---- More ----").is_some());
        assert!(waiting_prompt(b"line\r\n --More-- ").is_some());
        assert!(waiting_prompt(b"line\r\n  ---- More ----\x1b[42D   \x1b[42Dnext\r\n").is_none());
        assert!(waiting_prompt(b"plain output\r\n").is_none());
        let a = waiting_prompt(b"a\r\n---- More ----").unwrap();
        let b = waiting_prompt(b"a\r\n---- More ----\x1b[16D \x1b[16Db\r\n---- More ----").unwrap();
        assert!(b > a);
    }
}
