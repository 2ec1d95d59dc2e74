//! Secrets at rest (TOTP seeds today; device credentials later) sealed with AES-256-GCM.
//! The key never lives in the database: it comes from the configuration, the environment or a
//! key file beside the SQLite database.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::error::{StoreError, StoreResult};

pub struct SecretBox {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

impl SecretBox {
    /// From 32 raw key bytes.
    pub fn new(key: &[u8]) -> StoreResult<Self> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).map_err(|_| StoreError::Crypto("the secret key must be 32 bytes"))?;
        Ok(SecretBox { key: LessSafeKey::new(unbound) })
    }

    /// From the base64 text form used in configuration and key files.
    pub fn from_base64(text: &str) -> StoreResult<Self> {
        let raw = STANDARD.decode(text.trim()).map_err(|_| StoreError::Crypto("the secret key is not valid base64"))?;
        Self::new(&raw)
    }

    /// A new random key in its base64 text form.
    pub fn generate_base64() -> String {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source is unavailable");
        STANDARD.encode(key)
    }

    /// `v1:` + base64(nonce ‖ ciphertext ‖ tag). `purpose` is bound as associated data so that a
    /// sealed value cannot be moved to another field.
    pub fn seal(&self, purpose: &str, plaintext: &str) -> StoreResult<String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| StoreError::Crypto("no randomness"))?;
        let mut buf = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(purpose.as_bytes()), &mut buf)
            .map_err(|_| StoreError::Crypto("seal failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("v1:{}", STANDARD.encode(out)))
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> StoreResult<String> {
        let body = sealed.strip_prefix("v1:").ok_or(StoreError::Crypto("unknown sealed format"))?;
        let raw = STANDARD.decode(body).map_err(|_| StoreError::Crypto("sealed value is not base64"))?;
        if raw.len() < NONCE_LEN {
            return Err(StoreError::Crypto("sealed value too short"));
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| StoreError::Crypto("bad nonce"))?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buf)
            .map_err(|_| StoreError::Crypto("sealed value does not open with this key"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| StoreError::Crypto("sealed value is not text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let b = SecretBox::from_base64(&SecretBox::generate_base64()).unwrap();
        let s = b.seal("totp", "JBSWY3DPEHPK3PXP").unwrap();
        assert!(!s.contains("JBSWY3DP"));
        assert_eq!(b.open("totp", &s).unwrap(), "JBSWY3DPEHPK3PXP");
        assert!(b.open("device-password", &s).is_err(), "purpose is bound");
        let other = SecretBox::from_base64(&SecretBox::generate_base64()).unwrap();
        assert!(other.open("totp", &s).is_err());
        assert!(SecretBox::from_base64("c2hvcnQ=").is_err());
    }
}
