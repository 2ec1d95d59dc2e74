//! Validation of free text coming from people: lengths counted in characters, no control characters.

use crate::Msg;

/// Checks a single-line text field. Returns the trimmed value.
pub fn single_line(value: &str, max_chars: usize, required: bool) -> Result<String, Msg> {
    let v = value.trim();
    if required && v.is_empty() {
        return Err(Msg::new("不能为空", "must not be empty"));
    }
    if v.chars().count() > max_chars {
        return Err(Msg::new("内容过长", "is too long"));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(Msg::new("不能包含控制字符或换行", "must not contain control characters or line breaks"));
    }
    Ok(v.to_string())
}

/// Checks a multi-line text field: line breaks and tabs are allowed, other control characters not.
pub fn multi_line(value: &str, max_chars: usize) -> Result<String, Msg> {
    if value.chars().count() > max_chars {
        return Err(Msg::new("内容过长", "is too long"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err(Msg::new("不能包含控制字符", "must not contain control characters"));
    }
    Ok(value.trim().to_string())
}

/// A login name: 2–64 characters of letters, digits, '.', '_' and '-'.
pub fn login_name(value: &str) -> Result<String, Msg> {
    let v = value.trim();
    let ok_len = (2..=64).contains(&v.chars().count());
    let ok_chars = v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok_len && ok_chars {
        Ok(v.to_lowercase())
    } else {
        Err(Msg::new(
            "登录名须为 2–64 个字母、数字、点、下划线或连字符",
            "Login names are 2–64 letters, digits, '.', '_' or '-'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_characters_not_bytes() {
        assert!(single_line("机房一", 3, true).is_ok());
        assert!(single_line("机房一号", 3, true).is_err());
        assert!(single_line("  ", 3, true).is_err());
        assert!(single_line("a\u{0}b", 10, true).is_err());
        assert!(multi_line("a\nb", 10).is_ok());
        assert_eq!(login_name(" Zhang.Wei ").unwrap(), "zhang.wei");
        assert!(login_name("张伟").is_err());
        assert!(login_name("a'; drop table").is_err());
    }
}
