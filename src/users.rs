//! Users: accounts, passwords (argon2), quotas, and their drives' lifecycle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use serde::{Deserialize, Serialize};

use crate::drive::{new_node, release_content, Dead, Storage, FIXED_FOLDERS};
use crate::store::{now_nanos, Kind, StoreError, UserRec, WriteTx};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user `{0}` already exists")]
    Exists(String),
    #[error("no user `{0}`")]
    NotFound(String),
    #[error("invalid user name `{0}`: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    InvalidName(String),
    #[error("the password must have at least {MIN_PASSWORD} characters")]
    WeakPassword,
    #[error("{0}")]
    Invalid(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type UserResult<T> = Result<T, UserError>;

pub const MIN_PASSWORD: usize = 8;
/// How long a verified password is remembered, so that WebDAV clients, which send Basic
/// credentials with every request, don't pay for argon2 every time.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(300);

/// What `user list` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub quota: Option<u64>,
    pub used: u64,
    pub files: u64,
    /// Bytes read from the user's drive this calendar month (UTC).
    #[serde(default)]
    pub served_month: u64,
    /// Bytes of the user's torrents downloaded this calendar month (UTC).
    #[serde(default)]
    pub downloaded_month: u64,
}

pub struct Users {
    storage: Arc<Storage>,
    /// keyed hash of (name, password) → when it was verified
    verified: Mutex<HashMap<String, ([u8; 32], Instant)>>,
    cache_key: [u8; 32],
    /// Verified against for unknown users, so that a wrong name costs as much as a wrong
    /// password and the two can't be told apart by timing.
    dummy_hash: String,
}

pub fn check_user_name(name: &str) -> UserResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(UserError::InvalidName(name.to_owned()))
    }
}

fn hash_password(password: &str) -> UserResult<String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(UserError::WeakPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

impl Users {
    pub fn new(storage: Arc<Storage>) -> UserResult<Users> {
        let dummy_hash = hash_password("not a real password")?;
        Ok(Users {
            storage,
            verified: Mutex::new(HashMap::new()),
            cache_key: rand::random(),
            dummy_hash,
        })
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    fn forget(&self, name: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    fn fingerprint(&self, name: &str, password: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.cache_key);
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(password.as_bytes());
        *h.finalize().as_bytes()
    }

    pub fn get(&self, name: &str) -> UserResult<UserRec> {
        self.storage
            .store()
            .read(|tx| tx.user(name))?
            .ok_or_else(|| UserError::NotFound(name.to_owned()))
    }

    /// The user with id `id` (sessions and tokens name users by id).
    pub fn by_id(&self, id: u64) -> Option<UserRec> {
        self.all().ok()?.into_iter().find(|u| u.id == id)
    }

    /// Creates a user with an empty drive holding the fixed folders.
    pub fn add(&self, name: &str, password: &str, quota: Option<u64>) -> UserResult<UserRec> {
        check_user_name(name)?;
        let password_hash = hash_password(password)?;
        self.storage.store().write(|tx| {
            if tx.user(name)?.is_some() {
                return Err(UserError::Exists(name.to_owned()));
            }
            let id = tx.next_id("user")?;
            let (root, _) = new_node(tx, id, 0, "", Kind::Dir)?;
            for folder in FIXED_FOLDERS {
                new_node(tx, id, root, folder, Kind::Dir)?;
            }
            let rec = UserRec {
                id,
                name: name.to_owned(),
                password_hash,
                quota,
                root,
                created: now_nanos(),
            };
            tx.put_user(&rec)?;
            Ok(rec)
        })
    }

    pub fn all(&self) -> UserResult<Vec<UserRec>> {
        Ok(self.storage.store().read(|tx| tx.users())?)
    }

    pub fn list(&self) -> UserResult<Vec<UserInfo>> {
        let month = crate::traffic::month_of(std::time::SystemTime::now());
        Ok(self.storage.store().read(|tx| -> Result<_, StoreError> {
            let mut out = Vec::new();
            for u in tx.users()? {
                let (used, nodes) = tx.usage(u.id)?;
                let (served_month, downloaded_month) = tx.traffic(u.id, &month)?;
                out.push(UserInfo {
                    name: u.name,
                    quota: u.quota,
                    used,
                    files: nodes,
                    served_month,
                    downloaded_month,
                });
            }
            Ok(out)
        })?)
    }

    pub fn set_password(&self, name: &str, password: &str) -> UserResult<()> {
        let password_hash = hash_password(password)?;
        self.storage.store().write(|tx| {
            let mut rec = tx
                .user(name)?
                .ok_or_else(|| UserError::NotFound(name.to_owned()))?;
            rec.password_hash = password_hash;
            tx.put_user(&rec)?;
            crate::sessions::end_all(tx, rec.id)?;
            Ok::<_, UserError>(())
        })?;
        self.forget(name);
        Ok(())
    }

    pub fn set_quota(&self, name: &str, quota: Option<u64>) -> UserResult<()> {
        self.storage.store().write(|tx| {
            let mut rec = tx
                .user(name)?
                .ok_or_else(|| UserError::NotFound(name.to_owned()))?;
            rec.quota = quota;
            tx.put_user(&rec)?;
            Ok(())
        })
    }

    /// Deletes a user and everything in their drive.
    pub fn remove(&self, name: &str) -> UserResult<()> {
        let dead = self.storage.store().write(|tx| {
            let rec = tx
                .user(name)?
                .ok_or_else(|| UserError::NotFound(name.to_owned()))?;
            let dead = remove_tree(tx, rec.root)?;
            tx.remove_usage(rec.id)?;
            tx.remove_traffic(rec.id)?;
            crate::tokens::remove_all(tx, rec.id)?;
            crate::sessions::end_all(tx, rec.id)?;
            tx.remove_user(name)?;
            Ok::<_, UserError>(dead)
        })?;
        self.forget(name);
        self.storage.dispose(dead);
        Ok(())
    }

    /// The user, if this password was verified for them recently. Cheap: no argon2.
    pub fn verify_cached(&self, name: &str, password: &str) -> Option<UserRec> {
        let fingerprint = self.fingerprint(name, password);
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .is_some_and(|(f, at)| *f == fingerprint && at.elapsed() < AUTH_CACHE_TTL);
        if cached {
            self.get(name).ok()
        } else {
            None
        }
    }

    /// The user if the password is theirs. Blocking (argon2): call off the async threads.
    /// `verify` off the async threads (argon2 takes tens of milliseconds), cheap when the
    /// password was verified recently.
    pub async fn verify_async(self: &Arc<Self>, name: &str, password: &str) -> Option<UserRec> {
        if let Some(rec) = self.verify_cached(name, password) {
            return Some(rec);
        }
        let (users, name, password) = (self.clone(), name.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || users.verify(&name, &password))
            .await
            .ok()
            .flatten()
    }

    pub fn verify(&self, name: &str, password: &str) -> Option<UserRec> {
        if let Some(rec) = self.verify_cached(name, password) {
            return Some(rec);
        }
        let fingerprint = self.fingerprint(name, password);
        let rec = self.get(name).ok();
        let hash = rec.as_ref().map_or(&self.dummy_hash, |r| &r.password_hash);
        if !password_matches(hash, password) {
            return None;
        }
        let rec = rec?;
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), (fingerprint, Instant::now()));
        Some(rec)
    }

    /// Creates `admin` with a random password if there are no users. Returns the password.
    pub fn ensure_admin(&self) -> UserResult<Option<String>> {
        if !self.list()?.is_empty() {
            return Ok(None);
        }
        let password: String = {
            use rand::Rng;
            const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
            let mut rng = rand::thread_rng();
            (0..20)
                .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
                .collect()
        };
        self.add("admin", &password, None)?;
        Ok(Some(password))
    }
}

/// Deletes `root` and everything below it; returns the blobs nothing references any more.
fn remove_tree(tx: &WriteTx, root: u64) -> Result<Vec<Dead>, StoreError> {
    let mut dead = Vec::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        for (name, child) in tx.children(id)? {
            stack.push(child);
            tx.unlink(id, &name)?;
        }
        if let Some(rec) = tx.node(id)? {
            dead.extend(release_content(tx, &rec)?);
        }
        tx.remove_node(id)?;
    }
    Ok(dead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["admin", "a", "john.doe", "x_1-2"] {
            assert!(check_user_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }
}
