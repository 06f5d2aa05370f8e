//! Web page sessions: a random cookie value, of which only the BLAKE3 hash is stored (as
//! for API tokens), so the database alone signs nobody in. A session lives
//! [`SESSION_LIFETIME`], ends at sign-out, and all of a user's end when their password
//! changes or they are removed.
//!
//! The page proves a change is its own (CSRF) with a token derived from the cookie value:
//! another site can neither read the cookie nor compute the token.

use std::time::Duration;

use crate::store::{now_nanos, SessionRec, Store, StoreError, WriteTx};
use crate::torrents::metainfo::hex;

/// How long a session lasts after signing in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

fn hash_of(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// Starts a session for user `user`; returns the cookie value.
pub fn create(store: &Store, user: u64) -> Result<String, StoreError> {
    let secret = hex(&rand::random::<[u8; 32]>());
    let now = now_nanos();
    let rec = SessionRec {
        user,
        created: now,
        expires: now.saturating_add(SESSION_LIFETIME.as_nanos() as i64),
    };
    store.write(|tx| {
        // Sweep this user's dead sessions, so the table doesn't grow with every sign-in.
        for (hash, old) in tx.sessions()? {
            if old.user == user && old.expires <= now {
                tx.remove_session(&hash)?;
            }
        }
        tx.put_session(&hash_of(&secret), &rec)
    })?;
    Ok(secret)
}

/// The user id of a live session.
pub fn user_of(store: &Store, secret: &str) -> Result<Option<u64>, StoreError> {
    if secret.len() != 64 {
        return Ok(None);
    }
    let rec = store.read(|tx| tx.session(&hash_of(secret)))?;
    Ok(rec.filter(|r| r.expires > now_nanos()).map(|r| r.user))
}

/// Ends a session (sign-out).
pub fn end(store: &Store, secret: &str) -> Result<(), StoreError> {
    store.write(|tx| tx.remove_session(&hash_of(secret)))
}

/// Ends every session of `user`, inside the caller's transaction.
pub fn end_all(tx: &WriteTx, user: u64) -> Result<(), StoreError> {
    for (hash, rec) in tx.sessions()? {
        if rec.user == user {
            tx.remove_session(&hash)?;
        }
    }
    Ok(())
}

/// The CSRF token of a session: what the page sends back in `X-CSRF-Token` on changes.
pub fn csrf_token(secret: &str) -> String {
    hex(blake3::derive_key("torrentdrive 2026 web page csrf token", secret.as_bytes()).as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_stored_hashed_and_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = crate::service::Service::open(dir.path()).expect("open");
        let user = service.users.add("web", "password123", None).expect("add");
        let store = service.users.storage().store().clone();
        let a = create(&store, user.id).expect("create");
        let b = create(&store, user.id).expect("create");
        assert_eq!(user_of(&store, &a).expect("lookup"), Some(user.id));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        let stored = store.read(|tx| tx.sessions()).expect("sessions");
        // Only the hashes are kept: the database alone can't sign anyone in.
        let mut hashes: Vec<[u8; 32]> = stored.iter().map(|(h, _)| *h).collect();
        let mut want = vec![hash_of(&a), hash_of(&b)];
        hashes.sort();
        want.sort();
        assert_eq!(hashes, want);
        end(&store, &a).expect("end");
        assert_eq!(user_of(&store, &a).expect("lookup"), None);
        assert_eq!(user_of(&store, &b).expect("lookup"), Some(user.id));
        // A new password ends every session.
        service
            .users
            .set_password("web", "another-password")
            .expect("passwd");
        assert_eq!(user_of(&store, &b).expect("lookup"), None);
        let c = create(&store, user.id).expect("create");
        service.users.remove("web").expect("remove");
        assert_eq!(user_of(&store, &c).expect("lookup"), None);
        assert!(store.read(|tx| tx.sessions()).expect("sessions").is_empty());
    }

    #[test]
    fn expired_sessions_sign_nobody_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = crate::service::Service::open(dir.path()).expect("open");
        let user = service.users.add("old", "password123", None).expect("add");
        let store = service.users.storage().store().clone();
        let secret = "0".repeat(64);
        let rec = SessionRec {
            user: user.id,
            created: 0,
            expires: now_nanos() - 1,
        };
        store
            .write(|tx| tx.put_session(&hash_of(&secret), &rec))
            .expect("put");
        assert_eq!(user_of(&store, &secret).expect("lookup"), None);
        // The next sign-in sweeps it.
        create(&store, user.id).expect("create");
        let left = store.read(|tx| tx.sessions()).expect("sessions");
        assert_eq!(left.len(), 1);
    }
}
