//! TOTP second factor (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps, ±1 step of clock skew).

use totp_rs::{Algorithm, Builder, Secret, Totp};

const ISSUER: &str = "yunwei";

/// A new random 160-bit secret, base32-encoded as authenticator apps expect.
pub fn generate_secret() -> String {
    Secret::generate().to_base32()
}

fn totp(secret_b32: &str, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_b32).ok()?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(sanitize_account(account))
        .build()
        .ok()
}

// The otpauth label may not contain ':'; logins may.
fn sanitize_account(account: &str) -> String {
    let s: String = account.chars().filter(|c| *c != ':').collect();
    if s.is_empty() { "user".into() } else { s }
}

/// The `otpauth://` URL to put in a QR code.
pub fn otpauth_url(secret_b32: &str, account: &str) -> Option<String> {
    totp(secret_b32, account)?.to_url().ok()
}

/// Checks a code at `unix_secs` and returns the matched time step. The caller must refuse a step
/// not greater than the last one accepted for the user (RFC 6238 §5.2: a code is valid once).
pub fn verify(secret_b32: &str, code: &str, unix_secs: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret_b32, "user")?.check(code, unix_secs)
}

/// The code valid at `unix_secs` (for tests and enrolment checks).
pub fn code_at(secret_b32: &str, unix_secs: u64) -> Option<String> {
    Some(totp(secret_b32, "user")?.generate(unix_secs).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 Appendix B, SHA1 seed "12345678901234567890", T = 59 s → 94287082 (8 digits);
        // six digits are the low part: 287082.
        let secret = Secret::new_stack(*b"12345678901234567890").to_base32();
        assert_eq!(code_at(&secret, 59).unwrap(), "287082");
        assert_eq!(code_at(&secret, 1111111109).unwrap(), "081804");
    }

    #[test]
    fn accepts_neighbouring_step_only() {
        let s = generate_secret();
        let now = 1_800_000_000;
        let code = code_at(&s, now).unwrap();
        assert_eq!(verify(&s, &code, now), Some(now / 30));
        assert!(verify(&s, &code, now + 30).is_some());
        assert!(verify(&s, &code, now + 90).is_none());
        assert!(verify(&s, "12345", now).is_none());
        assert!(verify(&s, "abcdef", now).is_none());
    }

    #[test]
    fn url_has_issuer() {
        let s = generate_secret();
        let url = otpauth_url(&s, "sec:admin").unwrap();
        assert!(url.starts_with("otpauth://totp/yunwei:secadmin?"), "{url}");
    }
}
