//! Secrets at rest (TOTP seeds, device and probe credentials) sealed with AES-256-GCM or, where the
//! operator asks for the national standard (`secret_cipher = "sm4-gcm"`), SM4-GCM. The key never
//! lives in the database: it comes from the configuration, the environment or a key file beside
//! the SQLite database.
//!
//! The setting decides how new values are sealed; values sealed either way open whatever the
//! setting (each carries its format), so switching needs no migration: a value is sealed again
//! the next time it is saved.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sm3::{Digest, Sm3};

use crate::error::{StoreError, StoreResult};

/// SM4 (GB/T 32907) in GCM mode with 96-bit nonces and 128-bit tags, as in RFC 8998.
type Sm4Gcm = aes_gcm::AesGcm<sm4::Sm4, U12>;

/// How new secrets are sealed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cipher {
    /// `v1:` values.
    #[default]
    Aes256Gcm,
    /// `v2:` values.
    Sm4Gcm,
}

impl Cipher {
    /// The configuration's spelling: `aes-256-gcm` or `sm4-gcm`.
    pub fn parse(text: &str) -> Result<Cipher, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "aes-256-gcm" | "" => Ok(Cipher::Aes256Gcm),
            "sm4-gcm" => Ok(Cipher::Sm4Gcm),
            other => Err(format!(
                "secret_cipher must be \"aes-256-gcm\" or \"sm4-gcm\", not {other:?} / secret_cipher 只能是 aes-256-gcm 或 sm4-gcm"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::Sm4Gcm => "sm4-gcm",
        }
    }
}

pub struct SecretBox {
    aes: LessSafeKey,
    sm4: Sm4Gcm,
    seal_with: Cipher,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBox(<redacted>, {})", self.seal_with.name())
    }
}

/// SM4 takes a 128-bit key: the first half of SM3 over a label and the configured 32 bytes, so
/// that the two ciphers never use the same key material.
fn sm4_key(key: &[u8]) -> [u8; 16] {
    let mut h = Sm3::new();
    h.update(b"yunwei secret box: sm4-gcm key v2\0");
    h.update(key);
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

impl SecretBox {
    /// From 32 raw key bytes; new values are sealed with AES-256-GCM (see [`SecretBox::with_cipher`]).
    pub fn new(key: &[u8]) -> StoreResult<Self> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).map_err(|_| StoreError::Crypto("the secret key must be 32 bytes"))?;
        let sm4 = Sm4Gcm::new_from_slice(&sm4_key(key)).map_err(|_| StoreError::Crypto("SM4 key"))?;
        Ok(SecretBox { aes: LessSafeKey::new(unbound), sm4, seal_with: Cipher::Aes256Gcm })
    }

    /// From the base64 text form used in configuration and key files.
    pub fn from_base64(text: &str) -> StoreResult<Self> {
        let raw = STANDARD.decode(text.trim()).map_err(|_| StoreError::Crypto("the secret key is not valid base64"))?;
        Self::new(&raw)
    }

    /// The cipher new values are sealed with.
    pub fn with_cipher(mut self, cipher: Cipher) -> Self {
        self.seal_with = cipher;
        self
    }

    pub fn cipher(&self) -> Cipher {
        self.seal_with
    }

    /// A new random key in its base64 text form.
    pub fn generate_base64() -> String {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source is unavailable");
        STANDARD.encode(key)
    }

    /// `v1:` (AES-256-GCM) or `v2:` (SM4-GCM) + base64(nonce ‖ ciphertext ‖ tag). `purpose` is
    /// bound as associated data so that a sealed value cannot be moved to another field.
    pub fn seal(&self, purpose: &str, plaintext: &str) -> StoreResult<String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| StoreError::Crypto("no randomness"))?;
        let mut buf = plaintext.as_bytes().to_vec();
        let prefix = match self.seal_with {
            Cipher::Aes256Gcm => {
                self.aes
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(purpose.as_bytes()),
                        &mut buf,
                    )
                    .map_err(|_| StoreError::Crypto("seal failed"))?;
                "v1:"
            }
            Cipher::Sm4Gcm => {
                self.sm4
                    .encrypt_in_place(&nonce.into(), purpose.as_bytes(), &mut buf)
                    .map_err(|_| StoreError::Crypto("seal failed"))?;
                "v2:"
            }
        };
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{prefix}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> StoreResult<String> {
        let (cipher, body) = if let Some(body) = sealed.strip_prefix("v1:") {
            (Cipher::Aes256Gcm, body)
        } else if let Some(body) = sealed.strip_prefix("v2:") {
            (Cipher::Sm4Gcm, body)
        } else {
            return Err(StoreError::Crypto("unknown sealed format"));
        };
        let raw = STANDARD.decode(body).map_err(|_| StoreError::Crypto("sealed value is not base64"))?;
        if raw.len() < NONCE_LEN {
            return Err(StoreError::Crypto("sealed value too short"));
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let mut buf = rest.to_vec();
        let wrong_key = StoreError::Crypto("sealed value does not open with this key");
        let plain = match cipher {
            Cipher::Aes256Gcm => {
                let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| StoreError::Crypto("bad nonce"))?;
                self.aes.open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buf).map_err(|_| wrong_key)?.to_vec()
            }
            Cipher::Sm4Gcm => {
                let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| StoreError::Crypto("bad nonce"))?;
                self.sm4.decrypt_in_place(&nonce.into(), purpose.as_bytes(), &mut buf).map_err(|_| wrong_key)?;
                buf
            }
        };
        String::from_utf8(plain).map_err(|_| StoreError::Crypto("sealed value is not text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        for cipher in [Cipher::Aes256Gcm, Cipher::Sm4Gcm] {
            let b = SecretBox::from_base64(&SecretBox::generate_base64()).unwrap().with_cipher(cipher);
            let s = b.seal("totp", "JBSWY3DPEHPK3PXP").unwrap();
            assert!(s.starts_with(if cipher == Cipher::Sm4Gcm { "v2:" } else { "v1:" }), "{s}");
            assert!(!s.contains("JBSWY3DP"));
            assert_eq!(b.open("totp", &s).unwrap(), "JBSWY3DPEHPK3PXP");
            assert!(b.open("device-password", &s).is_err(), "purpose is bound");
            let other = SecretBox::from_base64(&SecretBox::generate_base64()).unwrap().with_cipher(cipher);
            assert!(other.open("totp", &s).is_err());
            // A changed byte of the ciphertext or tag is refused.
            let mut raw = STANDARD.decode(&s[3..]).unwrap();
            let last = raw.len() - 1;
            raw[last] ^= 1;
            assert!(b.open("totp", &format!("{}{}", &s[..3], STANDARD.encode(&raw))).is_err());
        }
        assert!(SecretBox::from_base64("c2hvcnQ=").is_err());
    }

    /// Switching the setting leaves every stored value readable.
    #[test]
    fn values_of_either_cipher_open_whatever_the_setting() {
        let key = SecretBox::generate_base64();
        let aes = SecretBox::from_base64(&key).unwrap();
        let sm4 = SecretBox::from_base64(&key).unwrap().with_cipher(Cipher::Sm4Gcm);
        let (v1, v2) = (aes.seal("p", "口令 one").unwrap(), sm4.seal("p", "口令 two").unwrap());
        assert_eq!(sm4.open("p", &v1).unwrap(), "口令 one");
        assert_eq!(aes.open("p", &v2).unwrap(), "口令 two");
        assert!(aes.open("p", "v3:AAAA").is_err());
        assert!(aes.open("p", "v2:AAAA").is_err(), "too short");
    }

    /// SM4-GCM against the test vector of RFC 8998 appendix A.1 (also what OpenSSL computes).
    #[test]
    fn sm4_gcm_known_answer() {
        let key = hex::decode("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let nonce: [u8; 12] = hex::decode("00001234567800000000ABCD").unwrap().try_into().unwrap();
        let aad = hex::decode("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2").unwrap();
        let mut buf = hex::decode(
            "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD\
             EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
        )
        .unwrap();
        let gcm = Sm4Gcm::new_from_slice(&key).unwrap();
        gcm.encrypt_in_place(&nonce.into(), &aad, &mut buf).unwrap();
        assert_eq!(
            hex::encode_upper(&buf),
            "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735\
             D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D\
             83DE3541E4C2B58177E065A9BF7B62EC"
        );
    }

    #[test]
    fn cipher_names() {
        assert_eq!(Cipher::parse("SM4-GCM"), Ok(Cipher::Sm4Gcm));
        assert_eq!(Cipher::parse("aes-256-gcm"), Ok(Cipher::Aes256Gcm));
        assert_eq!(Cipher::parse(""), Ok(Cipher::Aes256Gcm));
        assert!(Cipher::parse("sm4").unwrap_err().contains("sm4-gcm"));
        for c in [Cipher::Aes256Gcm, Cipher::Sm4Gcm] {
            assert_eq!(Cipher::parse(c.name()), Ok(c));
        }
    }
}
