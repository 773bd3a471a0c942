//! argon2id password hashing on a bounded blocking pool, so a login flood
//! queues for hashing permits instead of stalling other requests.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Memory cost in KiB (OWASP's argon2id minimum).
pub const MEMORY_KIB: u32 = 19_456;
/// Iterations.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;
/// Longest password accepted, in bytes, so hashing time stays bounded.
pub const MAX_PASSWORD_BYTES: usize = 4096;
/// Shortest and longest new password, in characters (not bytes).
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

/// Refuses a new password that is too short, too long, or easy to guess
/// (zxcvbn score below 3, counting `related` words such as the e-mail
/// address). No composition rules. The message is for the user.
pub fn check_strength(password: &str, related: &[String]) -> Result<(), String> {
    let chars = password.chars().count();
    if !PASSWORD_CHARS.contains(&chars) {
        return Err(format!(
            "passwords are {} to {} characters; this one has {chars}",
            PASSWORD_CHARS.start(),
            PASSWORD_CHARS.end()
        ));
    }
    // Whole inputs and their words: `ada.lovelace@example.com` also counts
    // as `ada`, `lovelace` and `example`.
    let mut words: Vec<&str> = related.iter().map(String::as_str).collect();
    words.extend(related.iter().flat_map(|r| r.split(|c: char| !c.is_alphanumeric())).filter(|w| w.len() >= 3));
    let entropy = zxcvbn::zxcvbn(password, &words);
    if u8::from(entropy.score()) >= 3 {
        return Ok(());
    }
    let feedback = entropy.feedback();
    let warning = feedback.and_then(|f| f.warning()).map(|w| w.to_string());
    let suggestion = feedback.and_then(|f| f.suggestions().first()).map(ToString::to_string);
    Err(match (warning, suggestion) {
        (Some(w), Some(s)) => format!("this password is too easy to guess: {w} {s}"),
        (Some(w), None) => format!("this password is too easy to guess: {w}"),
        (None, Some(s)) => format!("this password is too easy to guess. {s}"),
        (None, None) => "this password is too easy to guess; a few unrelated words make a strong one".to_owned(),
    })
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The password matches.
    pub valid: bool,
    /// The stored hash is weaker than the current parameters.
    pub needs_rehash: bool,
}

/// Hashes and verifies, at most `permits` at a time.
pub struct Passwords {
    /// One permit per concurrent hash; each uses ~19 MiB and a core.
    permits: Arc<Semaphore>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash of a random password, verified when there is no stored hash so an
/// unknown account costs the same as a known one.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        argon2().hash_password(b"plinth dummy password", &salt).expect("hash the dummy password").to_string()
    })
}

impl Passwords {
    /// A hasher allowing `permits` concurrent operations.
    pub fn new(permits: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(permits.max(1))) }
    }

    /// A PHC string for the password.
    pub async fn hash(&self, password: String) -> Result<String, String> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(format!("passwords are at most {MAX_PASSWORD_BYTES} bytes"));
        }
        let _permit = self.permits.acquire().await.expect("the password semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
        })
        .await
        .expect("the hashing task panicked")
    }

    /// Checks a password against a stored hash (or, with none, a dummy).
    pub async fn verify(&self, password: String, stored: Option<String>) -> Verdict {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let password = if password.len() > MAX_PASSWORD_BYTES { String::new() } else { password };
        let _permit = self.permits.acquire().await.expect("the password semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verdict { valid: false, needs_rehash: known };
            };
            let valid = known && argon2().verify_password(password.as_bytes(), &parsed).is_ok();
            Verdict { valid, needs_rehash: known && valid && is_weaker(&parsed) }
        })
        .await
        .expect("the verification task panicked")
    }
}

/// True when a stored hash is not argon2id with at least today's costs.
fn is_weaker(hash: &PasswordHash<'_>) -> bool {
    let Ok(params) = Params::try_from(hash) else {
        return true;
    };
    hash.algorithm.as_str() != "argon2id"
        || params.m_cost() < MEMORY_KIB
        || params.t_cost() < ITERATIONS
        || params.p_cost() != PARALLELISM
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_counts_characters_and_refuses_common_passwords() {
        assert!(check_strength("tangerine piano voyage", &[]).is_ok());
        let short = check_strength("ab€dé", &[]).unwrap_err();
        assert!(short.contains("has 5"), "{short}");
        let long = check_strength(&"é".repeat(128), &[]);
        assert!(long.map_or_else(|e| !e.contains("characters"), |()| true), "128 two-byte characters fit");
        assert!(check_strength(&"x".repeat(129), &[]).unwrap_err().contains("129"));
        for weak in ["password123", "qwertyuiop", "iloveyou1"] {
            assert!(check_strength(weak, &[]).unwrap_err().contains("too easy"), "{weak}");
        }
        assert!(check_strength("zephyrquillborne", &[]).is_ok(), "strong without context");
        let personal = check_strength("zephyrquillborne", &["zephyr.quillborne@example.com".into()]);
        assert!(personal.is_err(), "related words count");
    }

    #[tokio::test]
    async fn hashes_verify_and_weak_hashes_ask_for_a_rehash() {
        let passwords = Passwords::new(2);
        let hash = passwords.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        let good = passwords.verify("correct horse".into(), Some(hash.clone())).await;
        assert_eq!(good, Verdict { valid: true, needs_rehash: false });
        assert!(!passwords.verify("wrong".into(), Some(hash)).await.valid);
        assert!(!passwords.verify("anything".into(), None).await.valid);

        let weak_params = Params::new(8, 1, 1, None).unwrap();
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, weak_params)
            .hash_password(b"old", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        let verdict = passwords.verify("old".into(), Some(weak)).await;
        assert_eq!(verdict, Verdict { valid: true, needs_rehash: true });
    }
}
