//! Password rules and argon2id hashing, off the async runtime.

use std::sync::LazyLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{AppError, AppResult};

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 8;
/// Longest accepted password, in characters.
pub const MAX_LEN: usize = 128;

/// Checks the length rules for a new password.
pub fn validate(field: &str, password: &str) -> AppResult<()> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(AppError::bad_input(
            field,
            format!("password must be at least {MIN_LEN} characters"),
        ));
    }
    if n > MAX_LEN {
        return Err(AppError::bad_input(
            field,
            format!("password must be at most {MAX_LEN} characters"),
        ));
    }
    Ok(())
}

/// argon2id cost for new hashes: 7 MiB of memory, 5 passes, 1 lane — one of
/// the OWASP password-storage settings, equivalent in strength to the crate's
/// default (19 MiB, 2 passes) while holding under half the memory per login;
/// that memory stays with the allocator a while after each hash, and an idle
/// server should stay small. Stored hashes carry their own parameters, so
/// hashes made with other settings keep verifying.
const MEMORY_KIB: u32 = 7 * 1024;
const PASSES: u32 = 5;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, String> {
    hasher()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("password hashing failed: {e}"))
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody knows, verified against when the account does
/// not exist so unknown users take as long as wrong passwords.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_blocking(&crate::util::random_token(24)).unwrap_or_default());

/// Hashes a password with argon2id on the blocking pool.
pub async fn hash(password: String) -> AppResult<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await?
        .map_err(AppError::internal)
}

/// Verifies a password against a stored hash (or, with `None`, against a
/// dummy hash so the time taken does not reveal whether the account exists).
pub async fn verify(password: String, phc: Option<String>) -> AppResult<bool> {
    Ok(tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_blocking(&password, &phc),
        None => {
            verify_blocking(&password, &DUMMY_HASH);
            false
        }
    })
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_hashes_use_the_configured_cost_and_older_hashes_still_verify() {
        let h = hash_blocking("correct horse").unwrap();
        assert!(h.contains("m=7168,t=5,p=1"), "{h}");
        assert!(verify_blocking("correct horse", &h));
        assert!(!verify_blocking("wrong horse", &h));
        let older = Argon2::default()
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        assert!(older.contains("m=19456,t=2,p=1"), "{older}");
        assert!(verify_blocking("correct horse", &older));
        assert!(!verify_blocking("wrong horse", &older));
    }

    #[test]
    fn passwords_shorter_than_eight_characters_are_rejected() {
        assert!(validate("password", "short").is_err());
        assert!(validate("password", "longenough").is_ok());
    }

    #[test]
    fn passwords_longer_than_128_characters_are_rejected() {
        assert!(validate("password", &"x".repeat(129)).is_err());
        assert!(validate("password", &"é".repeat(128)).is_ok());
    }

    #[test]
    fn a_hash_verifies_its_password_and_nothing_else() {
        let h = hash_blocking("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_blocking("correct horse", &h));
        assert!(!verify_blocking("battery staple", &h));
        assert!(!verify_blocking("correct horse", "not a hash"));
    }
}
