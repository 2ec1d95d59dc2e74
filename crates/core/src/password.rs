//! Password policy (SE1) and argon2id hashing.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use serde::{Deserialize, Serialize};

use crate::Msg;

/// The policy a security admin edits. Defaults follow 等保 level 3 and the seeds (004 §(7)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityPolicy {
    pub min_length: u32,
    /// Days until a password must be changed; 0 disables expiry.
    pub expiry_days: u32,
    /// How many previous passwords may not be reused.
    pub reuse_history: u32,
    /// Consecutive failures that lock an account.
    pub lockout_threshold: u32,
    pub lockout_minutes: u32,
    /// A session unused this long must log in again.
    pub idle_timeout_minutes: u32,
    /// A session older than this must log in again, however busy.
    pub absolute_lifetime_hours: u32,
    /// Whether users without an admin role must also use TOTP.
    pub totp_required_for_all: bool,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        SecurityPolicy {
            min_length: 8,
            expiry_days: 90,
            reuse_history: 5,
            lockout_threshold: 5,
            lockout_minutes: 30,
            idle_timeout_minutes: 30,
            absolute_lifetime_hours: 12,
            totp_required_for_all: false,
        }
    }
}

impl SecurityPolicy {
    /// Bounds that keep a policy within what 等保 level 3 allows; a security admin cannot weaken
    /// the platform below them.
    pub fn validate(&self) -> Result<(), Msg> {
        if !(8..=128).contains(&self.min_length) {
            return Err(Msg::new("密码最小长度须在 8 到 128 之间", "Minimum password length must be 8 to 128"));
        }
        if self.expiry_days > 365 {
            return Err(Msg::new("密码有效期不能超过 365 天", "Password expiry cannot exceed 365 days"));
        }
        if self.reuse_history > 24 {
            return Err(Msg::new("历史密码数不能超过 24", "Password history cannot exceed 24"));
        }
        if !(1..=5).contains(&self.lockout_threshold) {
            return Err(Msg::new("锁定阈值须在 1 到 5 次之间", "Lockout threshold must be 1 to 5 failures"));
        }
        if !(1..=1440).contains(&self.lockout_minutes) {
            return Err(Msg::new("锁定时长须在 1 到 1440 分钟之间", "Lockout duration must be 1 to 1440 minutes"));
        }
        if !(1..=240).contains(&self.idle_timeout_minutes) {
            return Err(Msg::new("空闲超时须在 1 到 240 分钟之间", "Idle timeout must be 1 to 240 minutes"));
        }
        if !(1..=72).contains(&self.absolute_lifetime_hours) {
            return Err(Msg::new("会话最长有效期须在 1 到 72 小时之间", "Session lifetime must be 1 to 72 hours"));
        }
        Ok(())
    }
}

/// Why a candidate password was refused. Each maps to one bilingual message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyViolation {
    TooShort,
    TooLong,
    NoUpper,
    NoLower,
    NoDigit,
    NoSymbol,
    Common,
    ContainsLogin,
}

impl PolicyViolation {
    pub fn message(self) -> Msg {
        match self {
            PolicyViolation::TooShort => Msg::new("密码长度不足", "Password is too short"),
            PolicyViolation::TooLong => {
                Msg::new("密码过长（最多 128 个字符）", "Password is too long (128 characters at most)")
            }
            PolicyViolation::NoUpper => Msg::new("密码须包含大写字母", "Password needs an upper-case letter"),
            PolicyViolation::NoLower => Msg::new("密码须包含小写字母", "Password needs a lower-case letter"),
            PolicyViolation::NoDigit => Msg::new("密码须包含数字", "Password needs a digit"),
            PolicyViolation::NoSymbol => Msg::new("密码须包含符号", "Password needs a symbol"),
            PolicyViolation::Common => Msg::new("密码过于常见，容易被猜到", "Password is too common and easy to guess"),
            PolicyViolation::ContainsLogin => {
                Msg::new("密码不能包含登录名", "Password must not contain the login name")
            }
        }
    }
}

/// Checks a candidate password against the policy. Returns every violation, not just the first,
/// so a form can show them all at once.
pub fn check_password(policy: &SecurityPolicy, login: &str, candidate: &str) -> Vec<PolicyViolation> {
    let mut v = Vec::new();
    let len = candidate.chars().count();
    if len < policy.min_length as usize {
        v.push(PolicyViolation::TooShort);
    }
    if len > 128 {
        v.push(PolicyViolation::TooLong);
    }
    if !candidate.chars().any(|c| c.is_uppercase()) {
        v.push(PolicyViolation::NoUpper);
    }
    if !candidate.chars().any(|c| c.is_lowercase()) {
        v.push(PolicyViolation::NoLower);
    }
    if !candidate.chars().any(|c| c.is_ascii_digit()) {
        v.push(PolicyViolation::NoDigit);
    }
    if !candidate.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace()) {
        v.push(PolicyViolation::NoSymbol);
    }
    let lower = candidate.to_lowercase();
    let login = login.trim().to_lowercase();
    if !login.is_empty() && (lower.contains(&login) || lower == login.chars().rev().collect::<String>()) {
        v.push(PolicyViolation::ContainsLogin);
    }
    if is_common(candidate) {
        v.push(PolicyViolation::Common);
    }
    v
}

/// Common passwords and the words they are built from. A complex-looking password such as
/// `P@ssw0rd123!` or `Admin@123` is still what attackers try first: the candidate is reduced to
/// its "base" (lower case, leetspeak undone, leading/trailing digits and symbols stripped) and that
/// base is compared with this list. Keyboard walks common in Chinese deployments are included.
const COMMON_BASES: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "admin",
    "administrator",
    "root",
    "qwerty",
    "qwertyuiop",
    "asdfgh",
    "asdfghjkl",
    "zxcvbn",
    "zxcvbnm",
    "welcome",
    "letmein",
    "iloveyou",
    "abc",
    "abcd",
    "abcde",
    "abcdef",
    "test",
    "tester",
    "guest",
    "user",
    "system",
    "sysadmin",
    "manager",
    "master",
    "login",
    "changeme",
    "default",
    "secret",
    "super",
    "superman",
    "dragon",
    "monkey",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "shadow",
    "michael",
    "china",
    "beijing",
    "shanghai",
    "chengdu",
    "woaini",
    "wangluo",
    "yunwei",
    "huawei",
    "h3c",
    "cisco",
    "oracle",
    "mysql",
    "postgres",
    "server",
    "database",
    "network",
    "qazwsx",
    "qazwsxedc",
    "aaa",
    "abc123",
    "a",
    "aa",
    "q",
    "qq",
    "qwe",
    "asd",
    "zxc",
    "admin1",
    "p",
    "pw",
    "pwd",
    "hello",
    "welcome1",
    "trustno",
    "access",
    "computer",
    "internet",
    "service",
    "qaz",
    "wsx",
    "edc",
    "qweasd",
    "qweasdzxc",
    "1qaz2wsx",
    "1q2w3e4r",
    "1q2w3e",
    "zaq1xsw2",
    "1qazxsw2",
    "gov",
    "zhengwu",
    "jiankong",
    "anquan",
];

fn is_common(candidate: &str) -> bool {
    let lower = candidate.to_lowercase();
    // Leetspeak inside words ("p@ssw0rd"); '1' and '!' stay as they are because they far more
    // often trail a word ("Password1!") than stand for a letter.
    let leet: String = lower
        .chars()
        .map(|c| match c {
            '@' | '4' => 'a',
            '0' => 'o',
            '3' => 'e',
            '$' | '5' => 's',
            '7' => 't',
            other => other,
        })
        .collect();
    // Keyboard walks such as "1qaz@WSX" keep their digits: compare the alphanumeric form too.
    let alnum: String = lower.chars().filter(|c| c.is_alphanumeric()).collect();
    let alnum_trimmed = alnum.trim_matches(|c: char| c.is_ascii_digit());
    if COMMON_BASES.iter().any(|w| *w == alnum || *w == alnum_trimmed) {
        return true;
    }
    [lower.as_str(), leet.as_str()].iter().any(|variant| {
        // The longest run of letters is the "word"; a common word plus at most two stray letters
        // ("Admin@123A") is still common.
        let runs: Vec<&str> = variant.split(|c: char| !c.is_alphabetic()).filter(|r| !r.is_empty()).collect();
        let Some(longest) = runs.iter().max_by_key(|r| r.chars().count()) else {
            return false;
        };
        let others: usize = runs.iter().map(|r| r.chars().count()).sum::<usize>() - longest.chars().count();
        others <= 2 && COMMON_BASES.contains(longest)
    })
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

/// Hashes with argon2id (v19, m=19 MiB, t=2, p=1: the OWASP recommendation), random salt, PHC string.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|_| HashError)
}

/// Constant-time verification against a PHC string; a malformed stored hash verifies as false.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A random initial password for `login` that satisfies the strictest policy this module allows.
/// Shown once to the operator; the user must change it on first login.
pub fn initial_password_for(login: &str) -> String {
    let strict = SecurityPolicy { min_length: 16, ..SecurityPolicy::default() };
    loop {
        // A random string can happen to contain a short login name ("pm"): draw again.
        let candidate = generate_initial_password();
        if check_password(&strict, login, &candidate).is_empty() {
            return candidate;
        }
    }
}

/// 16 random characters cycling through upper case, lower case, digits and symbols.
fn generate_initial_password() -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"#%+=-_!?";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    let classes = [UPPER, LOWER, DIGIT, SYMBOL];
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let set = classes[i % 4];
            set[*b as usize % set.len()] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p() -> SecurityPolicy {
        SecurityPolicy::default()
    }

    #[test]
    fn accepts_a_strong_password() {
        assert_eq!(check_password(&p(), "zhang.wei", "Kq7#vLp2!xWm"), vec![]);
    }

    #[test]
    fn reports_every_missing_class() {
        let v = check_password(&p(), "u", "abc");
        for want in
            [PolicyViolation::TooShort, PolicyViolation::NoUpper, PolicyViolation::NoDigit, PolicyViolation::NoSymbol]
        {
            assert!(v.contains(&want), "{want:?} missing from {v:?}");
        }
        assert!(!v.contains(&PolicyViolation::NoLower));
    }

    #[test]
    fn refuses_common_passwords_dressed_up() {
        for pw in
            ["P@ssw0rd", "Password1!", "Admin@123", "admin@123A", "1qaz@WSX", "Qwerty123!", "Welcome1!", "Abc@1234"]
        {
            assert!(check_password(&p(), "x", pw).contains(&PolicyViolation::Common), "{pw} should be common");
        }
    }

    #[test]
    fn refuses_login_name_inside() {
        assert!(check_password(&p(), "zhangwei", "Zhangwei#2026").contains(&PolicyViolation::ContainsLogin));
        assert!(
            !check_password(&p(), "li", "Kq7#vLp2!xWm").contains(&PolicyViolation::ContainsLogin)
                || "kq7#vlp2!xwm".contains("li")
        );
    }

    #[test]
    fn hash_and_verify() {
        let h = hash_password("Kq7#vLp2!xWm").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"));
        assert!(verify_password("Kq7#vLp2!xWm", &h));
        assert!(!verify_password("Kq7#vLp2!xWn", &h));
        assert!(!verify_password("Kq7#vLp2!xWm", "not a hash"));
    }

    #[test]
    fn policy_bounds() {
        assert!(p().validate().is_ok());
        assert!(SecurityPolicy { min_length: 6, ..p() }.validate().is_err());
        assert!(SecurityPolicy { lockout_threshold: 10, ..p() }.validate().is_err());
    }

    proptest! {
        #[test]
        fn generated_initial_passwords_pass_the_strictest_policy(login in "[a-z]{2,3}") {
            let pw = initial_password_for(&login);
            let strict = SecurityPolicy { min_length: 16, ..p() };
            prop_assert_eq!(check_password(&strict, &login, &pw), vec![]);
        }

        #[test]
        fn short_passwords_are_always_refused(s in "\\PC{0,7}") {
            prop_assert!(check_password(&p(), "x", &s).contains(&PolicyViolation::TooShort));
        }
    }
}
