//! API tokens for scripts: `td_` and 64 hex digits, shown once when made. Only their
//! BLAKE3 hash is stored, so the database never holds a usable token; the first 12 hex
//! digits of that hash are the token's public id, to list and revoke it by.

use serde::{Deserialize, Serialize};

use crate::store::{now_nanos, Store, StoreError, TokenRec, UserRec};
use crate::torrents::metainfo::hex;

const PREFIX: &str = "td_";

/// A token as its owner sees it in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

fn hash_of(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

fn id_of(hash: &[u8; 32]) -> String {
    hex(&hash[..6])
}

fn info(hash: &[u8; 32], rec: &TokenRec) -> TokenInfo {
    TokenInfo {
        id: id_of(hash),
        name: rec.name.clone(),
        created: rec.created / 1_000_000_000,
    }
}

/// Makes a token for `user`; returns it (the only time it is seen) and its description.
pub fn create(
    store: &Store,
    user: &UserRec,
    name: &str,
) -> Result<(String, TokenInfo), StoreError> {
    let secret: [u8; 32] = rand::random();
    let token = format!("{PREFIX}{}", hex(&secret));
    let hash = hash_of(&token);
    let rec = TokenRec {
        user: user.id,
        name: name.to_owned(),
        created: now_nanos(),
    };
    store.write(|tx| tx.put_token(&hash, &rec))?;
    Ok((token, info(&hash, &rec)))
}

/// The user id a token belongs to, if it is a live token.
pub fn user_of(store: &Store, token: &str) -> Result<Option<u64>, StoreError> {
    if !token.starts_with(PREFIX) || token.len() != PREFIX.len() + 64 {
        return Ok(None);
    }
    Ok(store.read(|tx| tx.token(&hash_of(token)))?.map(|r| r.user))
}

/// The tokens of `user`, oldest first.
pub fn list(store: &Store, user: u64) -> Result<Vec<TokenInfo>, StoreError> {
    let mut out: Vec<(i64, TokenInfo)> = store
        .read(|tx| tx.tokens())?
        .into_iter()
        .filter(|(_, r)| r.user == user)
        .map(|(h, r)| (r.created, info(&h, &r)))
        .collect();
    out.sort_by_key(|(created, _)| *created);
    Ok(out.into_iter().map(|(_, i)| i).collect())
}

/// Revokes `user`'s token with public id `id`; false if there is none.
pub fn revoke(store: &Store, user: u64, id: &str) -> Result<bool, StoreError> {
    store.write(|tx| {
        let found = tx
            .tokens()?
            .into_iter()
            .find(|(h, r)| r.user == user && id_of(h) == id);
        match found {
            Some((hash, _)) => {
                tx.remove_token(&hash)?;
                Ok(true)
            }
            None => Ok(false),
        }
    })
}

/// Removes every token of `user` (the user is removed), inside the caller's transaction.
pub fn remove_all(tx: &crate::store::WriteTx, user: u64) -> Result<(), StoreError> {
    for (hash, rec) in tx.tokens()? {
        if rec.user == user {
            tx.remove_token(&hash)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_revocable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = crate::service::Service::open(dir.path()).expect("open");
        let user = service.users.add("tok", "password123", None).expect("add");
        let store = service.users.storage().store().clone();
        let (token, made) = create(&store, &user, "script").expect("create");
        assert!(token.starts_with("td_") && token.len() == 67);
        assert_eq!(user_of(&store, &token).expect("lookup"), Some(user.id));
        assert_eq!(user_of(&store, "td_nope").expect("lookup"), None);
        let stored = store.read(|tx| tx.tokens()).expect("tokens");
        // Only the hash is kept: the database alone can't sign anyone in.
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].0, hash_of(&token));
        assert_eq!(stored[0].1.name, "script");
        assert_eq!(list(&store, user.id).expect("list"), vec![made.clone()]);
        assert!(!revoke(&store, user.id + 1, &made.id).expect("other user"));
        assert!(revoke(&store, user.id, &made.id).expect("revoke"));
        assert_eq!(user_of(&store, &token).expect("lookup"), None);
        let (_, _) = create(&store, &user, "again").expect("create");
        service.users.remove("tok").expect("remove user");
        assert!(store.read(|tx| tx.tokens()).expect("tokens").is_empty());
    }
}
