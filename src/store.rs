//! The metadata store: every file, folder, user and reference count, in one redb database.
//!
//! redb because its file format is stable, every commit is atomic across tables and durable
//! when `commit` returns (`Durability::Immediate`), and it survives kill -9 without repair
//! scripts. Every change the daemon makes is one write transaction.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::cell::{OnceCell, RefCell};

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use torrentdrive_fs::{Change, FsError, NodeId};

/// node id → `NodeRec`
const NODES: TableDefinition<u64, &[u8]> = TableDefinition::new("nodes");
/// (folder id, name) → node id
const CHILDREN: TableDefinition<(u64, &str), u64> = TableDefinition::new("children");
/// (node id, name) → value
const XATTRS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("xattrs");
/// user name → `UserRec`
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// user id → (bytes used, nodes)
const USAGE: TableDefinition<u64, (u64, u64)> = TableDefinition::new("usage");
/// info-hash → `TorrentRec`
const TORRENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("torrents");
/// (user id, info-hash) → `TransferRec`: the torrents each user has
const TRANSFERS: TableDefinition<(u64, &[u8]), &[u8]> = TableDefinition::new("transfers");
/// node id → content of a small file
const INLINE: TableDefinition<u64, &[u8]> = TableDefinition::new("inline");
/// blob id → number of files whose content it is
const BLOB_REFS: TableDefinition<u128, u64> = TableDefinition::new("blob_refs");
/// name → next value
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// BLAKE3 hash of an API token → its record (the token itself is never stored).
const API_TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("api_tokens");
/// (user id, calendar month "YYYY-MM" in UTC) → (bytes served, bytes downloaded).
const TRAFFIC: TableDefinition<(u64, &str), (u64, u64)> = TableDefinition::new("traffic");
/// BLAKE3 hash of a web page session's cookie → its record.
const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");

/// Bumped when a record's encoding changes incompatibly.
const RECORD_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata database: {0}")]
    Db(#[from] redb::Error),
    #[error("metadata database is corrupt: {0}")]
    Corrupt(String),
    #[error("metadata commit failed: {0}")]
    Commit(String),
    #[error(transparent)]
    Fs(#[from] FsError),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<StoreError> for FsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Fs(e) => e,
            other => {
                tracing::error!(error = %other, "metadata store");
                FsError::Io(other.to_string())
            }
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
}

/// Where a file's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// Small files live in the database (`INLINE`, under the node's id; no entry when
    /// empty): one commit stores them. Kept out of the node record so that listings don't
    /// read file contents.
    Inline,
    /// A blob in the blob store, shared by copies (see `BLOB_REFS`).
    Blob(u128),
    /// File `file` (librqbit's file id) of the torrent with this info-hash; the data is the
    /// engine's, shared by every node that shows it (see `TORRENTS`). Read-only.
    Torrent { hash: [u8; 20], file: u32 },
}

/// A torrent in one user's drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRec {
    pub name: String,
    pub added: i64,
    /// Number of this user's nodes showing the torrent; the transfer ends at zero.
    pub refs: u64,
}

/// An API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRec {
    pub user: u64,
    /// What the user called it.
    pub name: String,
    pub created: i64,
}

/// A signed-in web page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRec {
    pub user: u64,
    pub created: i64,
    /// Nanoseconds since the Unix epoch; the session is dead after it.
    pub expires: i64,
}

/// A torrent some drive shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorrentRec {
    pub name: String,
    /// The `.torrent` file, to give it to the engine again.
    pub torrent: Vec<u8>,
    /// Number of nodes whose content is in this torrent; its data goes at zero.
    pub refs: u64,
    pub added: i64,
    /// When the download was first seen complete.
    pub completed: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRec {
    pub owner: u64,
    pub parent: u64,
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime: i64,
    pub ctime: i64,
    pub version: u64,
    pub content: Content,
    /// Whether `XATTRS` has entries for this node (saves a lookup per listed entry).
    pub has_xattrs: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRec {
    pub id: u64,
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    pub quota: Option<u64>,
    pub root: u64,
    pub created: i64,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    // Serialising plain structs into a Vec can't fail.
    out.extend(postcard::to_allocvec(value).unwrap_or_default());
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        _ => Err(StoreError::Corrupt("unknown record version".into())),
    }
}

/// An info-hash stored as a key.
fn info_hash(key: &[u8]) -> StoreResult<[u8; 20]> {
    key.try_into()
        .map_err(|_| StoreError::Corrupt("bad info-hash key".into()))
}

pub fn to_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

pub fn from_nanos(n: i64) -> SystemTime {
    if n >= 0 {
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

pub fn now_nanos() -> i64 {
    to_nanos(SystemTime::now())
}

pub struct Store {
    db: Arc<Database>,
    /// Queue of the group-commit writer (see `write_async`).
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    changes: Changes,
}

/// A write queued for the group-commit writer. `run` may be called twice: in a shared
/// transaction, and again alone if a job of the batch failed.
struct Job {
    run: Box<dyn FnMut(&WriteTx) -> bool + Send>,
    done: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// Most writes one commit carries.
const MAX_BATCH: usize = 128;

type Cached<K, V> = OnceCell<ReadOnlyTable<K, V>>;

/// A read-only snapshot. Tables are opened once per transaction: opening one costs about as
/// much as a lookup, and a listing does thousands of lookups.
pub struct ReadTx {
    tx: redb::ReadTransaction,
    nodes: Cached<u64, &'static [u8]>,
    children: Cached<(u64, &'static str), u64>,
    xattrs: Cached<(u64, &'static str), &'static [u8]>,
    users: Cached<&'static str, &'static [u8]>,
    usage: Cached<u64, (u64, u64)>,
    blob_refs: Cached<u128, u64>,
    inline: Cached<u64, &'static [u8]>,
    torrents: Cached<&'static [u8], &'static [u8]>,
    transfers: Cached<(u64, &'static [u8]), &'static [u8]>,
    traffic: Cached<(u64, &'static str), (u64, u64)>,
    api_tokens: Cached<&'static [u8], &'static [u8]>,
    sessions: Cached<&'static [u8], &'static [u8]>,
}
/// A write transaction: nothing is visible until the closure passed to `Store::write`
/// returns `Ok`, and then all of it is, durably. It records which entries and nodes it
/// changed; they are published (`Store::subscribe`) once the commit is durable.
pub struct WriteTx(redb::WriteTransaction, RefCell<Vec<OwnedChange>>);

/// A change to the tree of the user with that id.
pub type OwnedChange = (u64, Change);

/// Changes buffered for subscribers that fall behind; beyond that they get `Change::Lost`.
const CHANGE_BUFFER: usize = 4096;

impl WriteTx {
    fn new(tx: redb::WriteTransaction) -> WriteTx {
        WriteTx(tx, RefCell::new(Vec::new()))
    }

    fn note(&self, owner: u64, change: Change) {
        self.1.borrow_mut().push((owner, change));
    }

    /// Records a change to entry `name` of folder `parent`, for the folder's owner.
    fn note_entry(&self, parent: u64, name: &str) -> StoreResult<()> {
        if let Some(rec) = self.node(parent)? {
            self.note(
                rec.owner,
                Change::Entry {
                    parent: NodeId(parent),
                    name: name.to_owned(),
                },
            );
        }
        Ok(())
    }

    /// Commits, then tells subscribers what changed.
    fn commit(self, changes: &Changes) -> Result<(), redb::CommitError> {
        let WriteTx(tx, noted) = self;
        tx.commit()?;
        for change in noted.into_inner() {
            // No subscriber is not an error.
            let _ = changes.send(change);
        }
        Ok(())
    }
}

type Changes = tokio::sync::broadcast::Sender<OwnedChange>;

/// Lookups shared by both transaction kinds.
macro_rules! read_methods {
    () => {
        pub fn node(&self, id: u64) -> StoreResult<Option<NodeRec>> {
            let t = self.nodes_t()?;
            let v = t.get(id)?;
            v.map(|v| decode(v.value())).transpose()
        }

        pub fn child(&self, parent: u64, name: &str) -> StoreResult<Option<u64>> {
            let t = self.children_t()?;
            let v = t.get((parent, name))?;
            Ok(v.map(|v| v.value()))
        }

        /// (name, id) of a folder's entries, sorted by name.
        pub fn children(&self, parent: u64) -> StoreResult<Vec<(String, u64)>> {
            let t = self.children_t()?;
            let mut out = Vec::new();
            for entry in t.range((parent, "")..(parent.saturating_add(1), ""))? {
                let (k, v) = entry?;
                out.push((k.value().1.to_owned(), v.value()));
            }
            Ok(out)
        }

        pub fn has_children(&self, parent: u64) -> StoreResult<bool> {
            let t = self.children_t()?;
            let found = t
                .range((parent, "")..(parent.saturating_add(1), ""))?
                .next()
                .is_some();
            Ok(found)
        }

        pub fn xattrs(&self, id: u64) -> StoreResult<Vec<(String, Vec<u8>)>> {
            let t = self.xattrs_t()?;
            let mut out = Vec::new();
            for entry in t.range((id, "")..(id.saturating_add(1), ""))? {
                let (k, v) = entry?;
                out.push((k.value().1.to_owned(), v.value().to_vec()));
            }
            Ok(out)
        }

        pub fn user(&self, name: &str) -> StoreResult<Option<UserRec>> {
            let t = self.users_t()?;
            let v = t.get(name)?;
            v.map(|v| decode(v.value())).transpose()
        }

        pub fn users(&self) -> StoreResult<Vec<UserRec>> {
            let t = self.users_t()?;
            let mut out = Vec::new();
            for entry in t.iter()? {
                let (_, v) = entry?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        }

        /// (bytes used, number of nodes) of a user.
        pub fn usage(&self, user: u64) -> StoreResult<(u64, u64)> {
            let t = self.usage_t()?;
            let v = t.get(user)?;
            Ok(v.map(|v| v.value()).unwrap_or((0, 0)))
        }

        pub fn torrent(&self, hash: &[u8; 20]) -> StoreResult<Option<TorrentRec>> {
            let t = self.torrents_t()?;
            let v = t.get(hash.as_slice())?;
            v.map(|v| decode(v.value())).transpose()
        }

        pub fn torrents(&self) -> StoreResult<Vec<([u8; 20], TorrentRec)>> {
            let t = self.torrents_t()?;
            let mut out = Vec::new();
            for entry in t.iter()? {
                let (k, v) = entry?;
                out.push((info_hash(k.value())?, decode(v.value())?));
            }
            Ok(out)
        }

        pub fn transfer(&self, user: u64, hash: &[u8; 20]) -> StoreResult<Option<TransferRec>> {
            let t = self.transfers_t()?;
            let v = t.get((user, hash.as_slice()))?;
            v.map(|v| decode(v.value())).transpose()
        }

        /// A user's transfers, by info-hash.
        pub fn transfers_of(&self, user: u64) -> StoreResult<Vec<([u8; 20], TransferRec)>> {
            let t = self.transfers_t()?;
            let mut out = Vec::new();
            let empty: &[u8] = &[];
            for entry in t.range((user, empty)..(user.saturating_add(1), empty))? {
                let (k, v) = entry?;
                out.push((info_hash(k.value().1)?, decode(v.value())?));
            }
            Ok(out)
        }

        /// The content of a small file (empty if it has none).
        pub fn inline(&self, id: u64) -> StoreResult<Vec<u8>> {
            let t = self.inline_t()?;
            let v = t.get(id)?;
            Ok(v.map(|v| v.value().to_vec()).unwrap_or_default())
        }

        pub fn blob_refs(&self, blob: u128) -> StoreResult<u64> {
            let t = self.blob_refs_t()?;
            let v = t.get(blob)?;
            Ok(v.map(|v| v.value()).unwrap_or(0))
        }

        /// The token whose BLAKE3 hash is `hash`.
        pub fn token(&self, hash: &[u8; 32]) -> StoreResult<Option<TokenRec>> {
            let t = self.api_tokens_t()?;
            let v = t.get(hash.as_slice())?;
            v.map(|v| decode(v.value())).transpose()
        }

        /// Every token: (hash, record).
        pub fn tokens(&self) -> StoreResult<Vec<([u8; 32], TokenRec)>> {
            hashed_records(self.api_tokens_t()?.iter()?, "token")
        }

        /// The session whose BLAKE3 hash is `hash`.
        pub fn session(&self, hash: &[u8; 32]) -> StoreResult<Option<SessionRec>> {
            let t = self.sessions_t()?;
            let v = t.get(hash.as_slice())?;
            v.map(|v| decode(v.value())).transpose()
        }

        /// Every session: (hash, record).
        pub fn sessions(&self) -> StoreResult<Vec<([u8; 32], SessionRec)>> {
            hashed_records(self.sessions_t()?.iter()?, "session")
        }

        /// (bytes served, bytes downloaded) of a user in a month ("YYYY-MM").
        pub fn traffic(&self, user: u64, month: &str) -> StoreResult<(u64, u64)> {
            let t = self.traffic_t()?;
            let v = t.get((user, month))?;
            Ok(v.map(|v| v.value()).unwrap_or((0, 0)))
        }
    };
}

/// Every record of a table keyed by a BLAKE3 hash (API tokens, sessions).
fn hashed_records<T: DeserializeOwned>(
    entries: redb::Range<'_, &'static [u8], &'static [u8]>,
    what: &str,
) -> StoreResult<Vec<([u8; 32], T)>> {
    let mut out = Vec::new();
    for entry in entries {
        let (k, v) = entry?;
        let hash: [u8; 32] = k
            .value()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("{what} key is not 32 bytes")))?;
        out.push((hash, decode(v.value())?));
    }
    Ok(out)
}

macro_rules! cached_tables {
    ($($field:ident / $acc:ident: $def:ident => $k:ty, $v:ty;)*) => {
        impl ReadTx {
            fn new(tx: redb::ReadTransaction) -> ReadTx {
                ReadTx { tx, $($field: OnceCell::new(),)* }
            }
            $(
                fn $acc(&self) -> StoreResult<&ReadOnlyTable<$k, $v>> {
                    if let Some(t) = self.$field.get() {
                        return Ok(t);
                    }
                    let t = self.tx.open_table($def)?;
                    Ok(self.$field.get_or_init(|| t))
                }
            )*
        }
        impl WriteTx {
            $(
                fn $acc(&self) -> StoreResult<redb::Table<'_, $k, $v>> {
                    Ok(self.0.open_table($def)?)
                }
            )*
        }
    };
}

cached_tables! {
    nodes / nodes_t: NODES => u64, &'static [u8];
    children / children_t: CHILDREN => (u64, &'static str), u64;
    xattrs / xattrs_t: XATTRS => (u64, &'static str), &'static [u8];
    users / users_t: USERS => &'static str, &'static [u8];
    usage / usage_t: USAGE => u64, (u64, u64);
    blob_refs / blob_refs_t: BLOB_REFS => u128, u64;
    inline / inline_t: INLINE => u64, &'static [u8];
    torrents / torrents_t: TORRENTS => &'static [u8], &'static [u8];
    transfers / transfers_t: TRANSFERS => (u64, &'static [u8]), &'static [u8];
    traffic / traffic_t: TRAFFIC => (u64, &'static str), (u64, u64);
    api_tokens / api_tokens_t: API_TOKENS => &'static [u8], &'static [u8];
    sessions / sessions_t: SESSIONS => &'static [u8], &'static [u8];
}

impl ReadTx {
    read_methods!();
}

/// Tree lookups both transaction kinds offer, for code that walks the tree in either.
pub trait TreeRead {
    fn node(&self, id: u64) -> StoreResult<Option<NodeRec>>;
    fn child(&self, parent: u64, name: &str) -> StoreResult<Option<u64>>;
}

macro_rules! tree_read {
    ($($t:ty),*) => {$(
        impl TreeRead for $t {
            fn node(&self, id: u64) -> StoreResult<Option<NodeRec>> {
                <$t>::node(self, id)
            }
            fn child(&self, parent: u64, name: &str) -> StoreResult<Option<u64>> {
                <$t>::child(self, parent, name)
            }
        }
    )*};
}
tree_read!(ReadTx, WriteTx);

impl WriteTx {
    read_methods!();

    pub fn put_node(&self, id: u64, rec: &NodeRec) -> StoreResult<()> {
        self.0
            .open_table(NODES)?
            .insert(id, encode(rec).as_slice())?;
        self.note(rec.owner, Change::Node(NodeId(id)));
        Ok(())
    }

    pub fn remove_node(&self, id: u64) -> StoreResult<()> {
        if let Some(rec) = self.node(id)? {
            self.note(rec.owner, Change::Node(NodeId(id)));
        }
        self.0.open_table(NODES)?.remove(id)?;
        self.0.open_table(INLINE)?.remove(id)?;
        let mut x = self.0.open_table(XATTRS)?;
        x.retain_in((id, "")..(id.saturating_add(1), ""), |_, _| false)?;
        Ok(())
    }

    pub fn put_torrent(&self, hash: &[u8; 20], rec: &TorrentRec) -> StoreResult<()> {
        self.0
            .open_table(TORRENTS)?
            .insert(hash.as_slice(), encode(rec).as_slice())?;
        Ok(())
    }

    pub fn put_transfer(&self, user: u64, hash: &[u8; 20], rec: &TransferRec) -> StoreResult<()> {
        self.0
            .open_table(TRANSFERS)?
            .insert((user, hash.as_slice()), encode(rec).as_slice())?;
        Ok(())
    }

    pub fn remove_transfer(&self, user: u64, hash: &[u8; 20]) -> StoreResult<()> {
        self.0
            .open_table(TRANSFERS)?
            .remove((user, hash.as_slice()))?;
        Ok(())
    }

    pub fn remove_torrent(&self, hash: &[u8; 20]) -> StoreResult<()> {
        self.0.open_table(TORRENTS)?.remove(hash.as_slice())?;
        Ok(())
    }

    /// Sets (or, with `None` or empty data, removes) a small file's content.
    pub fn set_inline(&self, id: u64, data: Option<&[u8]>) -> StoreResult<()> {
        let mut t = self.0.open_table(INLINE)?;
        match data {
            Some(d) if !d.is_empty() => t.insert(id, d)?,
            _ => t.remove(id)?,
        };
        Ok(())
    }

    pub fn link(&self, parent: u64, name: &str, id: u64) -> StoreResult<()> {
        self.0.open_table(CHILDREN)?.insert((parent, name), id)?;
        self.note_entry(parent, name)
    }

    pub fn unlink(&self, parent: u64, name: &str) -> StoreResult<()> {
        self.0.open_table(CHILDREN)?.remove((parent, name))?;
        self.note_entry(parent, name)
    }

    pub fn set_xattr(&self, id: u64, name: &str, value: Option<&[u8]>) -> StoreResult<()> {
        let mut t = self.0.open_table(XATTRS)?;
        match value {
            Some(v) => t.insert((id, name), v)?,
            None => t.remove((id, name))?,
        };
        Ok(())
    }

    /// Adds `delta` to a blob's reference count and returns the new count; the entry goes
    /// away at zero.
    pub fn add_blob_ref(&self, blob: u128, delta: i64) -> StoreResult<u64> {
        let mut t = self.0.open_table(BLOB_REFS)?;
        let old = t.get(blob)?.map(|v| v.value()).unwrap_or(0);
        let new = old.checked_add_signed(delta).ok_or_else(|| {
            StoreError::Corrupt(format!("reference count of blob {blob:032x} below zero"))
        })?;
        if new == 0 {
            t.remove(blob)?;
        } else {
            t.insert(blob, new)?;
        }
        Ok(new)
    }

    pub fn set_usage(&self, user: u64, used: u64, nodes: u64) -> StoreResult<()> {
        self.0.open_table(USAGE)?.insert(user, (used, nodes))?;
        Ok(())
    }

    pub fn remove_usage(&self, user: u64) -> StoreResult<()> {
        self.0.open_table(USAGE)?.remove(user)?;
        Ok(())
    }

    pub fn put_user(&self, rec: &UserRec) -> StoreResult<()> {
        self.0
            .open_table(USERS)?
            .insert(rec.name.as_str(), encode(rec).as_slice())?;
        Ok(())
    }

    pub fn remove_user(&self, name: &str) -> StoreResult<()> {
        self.0.open_table(USERS)?.remove(name)?;
        Ok(())
    }

    /// Adds to a user's traffic of a month.
    pub fn add_traffic(
        &self,
        user: u64,
        month: &str,
        served: u64,
        downloaded: u64,
    ) -> StoreResult<()> {
        let (s, d) = self.traffic(user, month)?;
        self.0.open_table(TRAFFIC)?.insert(
            (user, month),
            (s.saturating_add(served), d.saturating_add(downloaded)),
        )?;
        Ok(())
    }

    pub fn put_token(&self, hash: &[u8; 32], rec: &TokenRec) -> StoreResult<()> {
        self.0
            .open_table(API_TOKENS)?
            .insert(hash.as_slice(), encode(rec).as_slice())?;
        Ok(())
    }

    pub fn remove_token(&self, hash: &[u8; 32]) -> StoreResult<()> {
        self.0.open_table(API_TOKENS)?.remove(hash.as_slice())?;
        Ok(())
    }

    pub fn put_session(&self, hash: &[u8; 32], rec: &SessionRec) -> StoreResult<()> {
        self.0
            .open_table(SESSIONS)?
            .insert(hash.as_slice(), encode(rec).as_slice())?;
        Ok(())
    }

    pub fn remove_session(&self, hash: &[u8; 32]) -> StoreResult<()> {
        self.0.open_table(SESSIONS)?.remove(hash.as_slice())?;
        Ok(())
    }

    /// Forgets all of a user's traffic (the user is removed).
    pub fn remove_traffic(&self, user: u64) -> StoreResult<()> {
        let mut t = self.0.open_table(TRAFFIC)?;
        t.retain_in((user, "")..(user.saturating_add(1), ""), |_, _| false)?;
        Ok(())
    }

    /// The next value of a counter (ids are never reused).
    pub fn next_id(&self, counter: &str) -> StoreResult<u64> {
        let mut t = self.0.open_table(COUNTERS)?;
        let next = t.get(counter)?.map(|v| v.value()).unwrap_or(1);
        t.insert(counter, next + 1)?;
        Ok(next)
    }
}

/// The group-commit writer: takes every write queued while the previous commit was being
/// made durable and commits them together, so concurrent writers share one fsync. Each write
/// still commits atomically: if one fails, the batch is dropped and each write is redone in
/// a transaction of its own.
fn writer(db: Arc<Database>, jobs: mpsc::Receiver<Job>, changes: Changes) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let all_ok = match db.begin_write() {
            Ok(tx) => {
                let tx = WriteTx::new(tx);
                if batch.iter_mut().all(|job| (job.run)(&tx)) {
                    let result = tx.commit(&changes).map_err(|e| e.to_string());
                    for job in batch.drain(..) {
                        (job.done)(result.clone());
                    }
                    true
                } else {
                    false
                }
            }
            Err(e) => {
                for job in batch.drain(..) {
                    (job.done)(Err(e.to_string()));
                }
                true
            }
        };
        if !all_ok {
            for mut job in batch {
                let result = match db.begin_write() {
                    Ok(tx) => {
                        let tx = WriteTx::new(tx);
                        if (job.run)(&tx) {
                            tx.commit(&changes).map_err(|e| e.to_string())
                        } else {
                            Ok(()) // the job's own error is in its result
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                (job.done)(result);
            }
        }
    }
}

impl Store {
    pub fn open(path: &Path) -> StoreResult<Store> {
        let db = Arc::new(Database::create(path)?);
        let (tx, rx) = mpsc::channel();
        let writer_db = db.clone();
        let (changes, _) = tokio::sync::broadcast::channel(CHANGE_BUFFER);
        let writer_changes = changes.clone();
        std::thread::Builder::new()
            .name("metadata-writer".into())
            .spawn(move || writer(writer_db, rx, writer_changes))
            .map_err(|e| StoreError::Corrupt(format!("starting the writer: {e}")))?;
        let store = Store {
            db,
            jobs: Mutex::new(Some(tx)),
            changes,
        };
        // Create every table so read transactions never meet a missing one.
        store.write(|tx| {
            tx.0.open_table(NODES)?;
            tx.0.open_table(CHILDREN)?;
            tx.0.open_table(XATTRS)?;
            tx.0.open_table(USERS)?;
            tx.0.open_table(USAGE)?;
            tx.0.open_table(BLOB_REFS)?;
            tx.0.open_table(INLINE)?;
            tx.0.open_table(TORRENTS)?;
            tx.0.open_table(TRANSFERS)?;
            tx.0.open_table(COUNTERS)?;
            tx.0.open_table(TRAFFIC)?;
            tx.0.open_table(API_TOKENS)?;
            tx.0.open_table(SESSIONS)?;
            Ok::<_, StoreError>(())
        })?;
        Ok(store)
    }

    /// Writes a consistent copy of the whole database, as of one read transaction, to a new
    /// database at `path` (which must not exist), durably. Returns the ids of the blobs that
    /// copy references. Writers go on meanwhile.
    pub fn snapshot_to(&self, path: &Path) -> StoreResult<Vec<u128>> {
        let src = self.db.begin_read()?;
        let copy = Database::create(path)?;
        let dst = copy.begin_write()?;
        macro_rules! copy_tables {
            ($($def:ident),*) => {$({
                let from = src.open_table($def)?;
                let mut to = dst.open_table($def)?;
                for entry in from.iter()? {
                    let (k, v) = entry?;
                    to.insert(k.value(), v.value())?;
                }
            })*};
        }
        copy_tables!(
            NODES, CHILDREN, XATTRS, USERS, USAGE, BLOB_REFS, INLINE, TORRENTS, TRANSFERS,
            COUNTERS, TRAFFIC, API_TOKENS, SESSIONS
        );
        dst.commit()?;
        let mut blobs = Vec::new();
        for entry in src.open_table(BLOB_REFS)?.iter()? {
            let (id, refs) = entry?;
            if refs.value() > 0 {
                blobs.push(id.value());
            }
        }
        Ok(blobs)
    }

    /// Every change committed from now on, with the id of the user whose tree it is in.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<OwnedChange> {
        self.changes.subscribe()
    }

    pub fn read<T, E>(&self, f: impl FnOnce(&ReadTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self.db.begin_read().map_err(StoreError::from)?;
        f(&ReadTx::new(tx))
    }

    /// Runs `f` in a write transaction, committed together with other writes queued at the
    /// same time; returns once the commit is durable. `f` may run twice (see `writer`), so
    /// it must only read its captures.
    pub async fn write_async<T, E>(
        &self,
        f: impl Fn(&WriteTx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let slot: Arc<Mutex<Option<Result<T, E>>>> = Arc::new(Mutex::new(None));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let result_slot = slot.clone();
        let job = Job {
            run: Box::new(move |tx| {
                let r = f(tx);
                let ok = r.is_ok();
                *result_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                ok
            }),
            done: Box::new(move |r| {
                let _ = done_tx.send(r);
            }),
        };
        let sent = match &*self.jobs.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Corrupt("the metadata writer has stopped".into()).into());
        }
        let committed = done_rx
            .await
            .map_err(|_| StoreError::Corrupt("the metadata writer has stopped".into()))?;
        let result = slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| StoreError::Corrupt("write produced no result".into()))?;
        match (result, committed) {
            (Ok(_), Err(e)) => Err(StoreError::Commit(e).into()),
            (r, _) => r,
        }
    }

    /// Runs `f` in a write transaction and commits if it returns `Ok`.
    pub fn write<T, E>(&self, f: impl FnOnce(&WriteTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = WriteTx::new(self.db.begin_write().map_err(StoreError::from)?);
        let value = f(&tx)?;
        tx.commit(&self.changes).map_err(StoreError::from)?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_commit_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("meta.redb")).expect("open");
        let rec = NodeRec {
            owner: 1,
            parent: 1,
            name: "a".into(),
            kind: Kind::File,
            size: 3,
            mtime: -5,
            ctime: now_nanos(),
            version: 1,
            content: Content::Inline,
            has_xattrs: false,
        };
        store
            .write(|tx| -> StoreResult<()> {
                tx.put_node(2, &rec)?;
                tx.link(1, "a", 2)?;
                tx.link(1, "b", 3)?;
                tx.link(2, "z", 4)?;
                Ok(())
            })
            .expect("write");
        // A failing transaction leaves nothing behind.
        let failed: StoreResult<()> = store.write(|tx| {
            tx.link(1, "c", 5)?;
            Err(StoreError::Fs(FsError::Exists))
        });
        assert!(failed.is_err());
        store
            .read(|tx| -> StoreResult<()> {
                assert_eq!(tx.node(2)?, Some(rec.clone()));
                assert_eq!(
                    tx.children(1)?,
                    vec![("a".to_string(), 2), ("b".to_string(), 3)]
                );
                assert_eq!(tx.child(1, "c")?, None);
                Ok(())
            })
            .expect("read");
        assert_eq!(
            from_nanos(to_nanos(UNIX_EPOCH - Duration::from_secs(3))),
            UNIX_EPOCH - Duration::from_secs(3)
        );
    }
}

#[cfg(test)]
mod group_commit_tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_write_does_not_take_its_batch_down() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("meta.redb")).expect("open"));
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .write_async(move |tx| {
                            tx.link(1, &format!("n{i}"), i)?;
                            // Every fourth write fails after it changed something.
                            if i % 4 == 0 {
                                return Err(StoreError::Fs(FsError::Exists));
                            }
                            Ok(i)
                        })
                        .await
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let r = t.await.expect("task");
            assert_eq!(r.is_ok(), i % 4 != 0, "write {i}: {r:?}");
        }
        let names = store.read(|tx| tx.children(1)).expect("read");
        assert_eq!(names.len(), 48);
        assert!(names.iter().all(|(_, id)| id % 4 != 0));
    }
}
