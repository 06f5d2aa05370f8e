//! The behaviour every `Drive` must have. Each implementation runs [`run`] from its tests:
//!
//! ```no_run
//! # async fn t() {
//! torrentdrive_fs::conformance::run(|quota| async move { torrentdrive_fs::MemoryDrive::new(quota) }).await;
//! # }
//! ```
//!
//! Every case gets a fresh drive and works in a folder of its own, so drives that start with
//! folders of their own pass too. A failing case panics with its name. A front end that
//! can't express part of the contract (a POSIX mount) runs [`run_except`], naming the cases
//! it skips ([`case_names`] lists them all).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{
    Attr, CreateOptions, Drive, FileHandle, FsError, NodeId, NodeKind, OpenOptions, RenameOptions,
    SetAttr, XattrChange,
};

type Case<D> = fn(Arc<D>, NodeId) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        fn all_cases<D: Drive>() -> Vec<(&'static str, Case<D>)> {
            vec![$((stringify!($name), |d, dir| Box::pin($name(d, dir)))),*]
        }
    };
}

cases!(
    create_write_read,
    deferred_create_appears_on_flush,
    overwrite_is_atomic,
    incomplete_upload_commits_nothing,
    partial_write_keeps_the_rest,
    truncate_open_handle,
    read_past_end,
    quota_is_enforced,
    usage_follows_changes,
    folders,
    removal_errors,
    rename_moves,
    rename_replaces,
    rename_refusals,
    names_are_checked,
    copy_is_independent,
    setattr_truncates_and_extends,
    xattrs_round_trip,
    list_is_sorted_with_attrs,
    resolve_walks_paths,
    handles_are_checked,
    concurrent_creates,
);

/// The quota the quota cases give their drive.
pub const TEST_QUOTA: u64 = 10_000;

/// The names of all cases, in the order [`run`] runs them.
pub fn case_names() -> Vec<&'static str> {
    // The names don't depend on the drive type; any `Drive` will do to list them.
    all_cases::<crate::MemoryDrive>()
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Runs every case against fresh drives from `new_drive(quota)`.
pub async fn run<D, F, Fut>(new_drive: F)
where
    D: Drive,
    F: Fn(Option<u64>) -> Fut,
    Fut: Future<Output = D>,
{
    run_except(&[], new_drive).await;
}

/// Runs every case except those named in `skip`, for front ends that can't express part of
/// the contract (a POSIX mount has no deferred create, for one). Panics if a name in `skip`
/// is not a case, so a typo can't silently skip nothing.
pub async fn run_except<D, F, Fut>(skip: &[&str], new_drive: F)
where
    D: Drive,
    F: Fn(Option<u64>) -> Fut,
    Fut: Future<Output = D>,
{
    let cases = all_cases::<D>();
    if let Some(unknown) = skip
        .iter()
        .find(|s| !cases.iter().any(|(name, _)| name == *s))
    {
        panic!("run_except: `{unknown}` is not a conformance case");
    }
    for (name, case) in cases {
        if skip.contains(&name) {
            continue;
        }
        let quota = name.starts_with("quota").then_some(TEST_QUOTA);
        let drive = Arc::new(new_drive(quota).await);
        let dir = drive
            .mkdir(drive.root(), "conformance")
            .await
            .unwrap_or_else(|e| panic!("{name}: mkdir of the test folder: {e}"));
        let task = tokio::spawn(case(drive, dir.id));
        if let Err(e) = task.await {
            panic!("conformance case `{name}` failed: {e}");
        }
    }
}

async fn put(d: &impl Drive, dir: NodeId, name: &str, data: &[u8]) -> Attr {
    let (_, fh) = d
        .create(dir, name, CreateOptions::default())
        .await
        .expect("create");
    if !data.is_empty() {
        assert_eq!(
            d.write(fh, 0, data).await.expect("write"),
            data.len() as u32
        );
    }
    let attr = d.flush(fh).await.expect("flush");
    d.release(fh).await.expect("release");
    attr
}

async fn get(d: &impl Drive, node: NodeId) -> Vec<u8> {
    let fh = d.open(node, OpenOptions::default()).await.expect("open");
    let mut out = Vec::new();
    loop {
        let chunk = d.read(fh, out.len() as u64, 7919).await.expect("read");
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    d.release(fh).await.expect("release");
    out
}

async fn names(d: &impl Drive, dir: NodeId) -> Vec<String> {
    d.list(dir)
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.name)
        .collect()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn create_write_read<D: Drive>(d: Arc<D>, dir: NodeId) {
    let data = pattern(100_000);
    let a = put(&*d, dir, "file.bin", &data).await;
    assert_eq!(a.kind, NodeKind::File);
    assert_eq!(a.size, data.len() as u64);
    let looked = d.lookup(dir, "file.bin").await.expect("lookup");
    assert_eq!(looked.id, a.id);
    assert_eq!(looked.size, a.size);
    assert_eq!(d.getattr(a.id).await.expect("getattr").size, a.size);
    assert_eq!(get(&*d, a.id).await, data);
    let b = put(&*d, dir, "file.bin", b"short").await;
    assert_eq!(b.id, a.id, "re-creating a file keeps its identity");
    assert_ne!(b.etag(), a.etag(), "the etag changes with the content");
    assert_eq!(get(&*d, a.id).await, b"short");
    let empty = put(&*d, dir, "empty", b"").await;
    assert_eq!(empty.size, 0);
    assert_eq!(get(&*d, empty.id).await, b"");
}

async fn deferred_create_appears_on_flush<D: Drive>(d: Arc<D>, dir: NodeId) {
    let opts = CreateOptions {
        deferred: true,
        ..Default::default()
    };
    let (_, fh) = d.create(dir, "upload", opts).await.expect("create");
    d.write(fh, 0, b"hello").await.expect("write");
    assert_eq!(d.handle_attr(fh).await.expect("handle_attr").size, 5);
    assert_eq!(d.lookup(dir, "upload").await, Err(FsError::NotFound));
    let a = d.flush(fh).await.expect("flush");
    d.release(fh).await.expect("release");
    assert_eq!(d.lookup(dir, "upload").await.expect("lookup").id, a.id);
    assert_eq!(get(&*d, a.id).await, b"hello");

    // Dropped before the commit: nothing is left.
    let (_, fh) = d.create(dir, "dropped", opts).await.expect("create");
    d.write(fh, 0, b"partial").await.expect("write");
    d.release(fh).await.expect("release");
    assert_eq!(d.lookup(dir, "dropped").await, Err(FsError::NotFound));
    assert_eq!(names(&*d, dir).await, vec!["upload"]);

    // An empty upload still creates the file.
    let (_, fh) = d.create(dir, "zero", opts).await.expect("create");
    d.flush(fh).await.expect("flush");
    d.release(fh).await.expect("release");
    assert_eq!(d.lookup(dir, "zero").await.expect("lookup").size, 0);
}

async fn overwrite_is_atomic<D: Drive>(d: Arc<D>, dir: NodeId) {
    let a = put(&*d, dir, "f", b"old content").await;
    let reader = d.open(a.id, OpenOptions::default()).await.expect("open");
    let opts = OpenOptions {
        write: true,
        truncate: true,
        expected_size: None,
    };
    let fh = d.open(a.id, opts).await.expect("open for write");
    d.write(fh, 0, b"new").await.expect("write");
    assert_eq!(
        get(&*d, a.id).await,
        b"old content",
        "uncommitted writes are invisible"
    );
    assert_eq!(d.read(fh, 0, 100).await.expect("read own").as_ref(), b"new");
    d.flush(fh).await.expect("flush");
    assert_eq!(get(&*d, a.id).await, b"new");
    assert_eq!(d.getattr(a.id).await.expect("getattr").size, 3);
    let old = d.read(reader, 0, 100).await.expect("read old handle");
    assert!(old.as_ref() == b"old content" || old.as_ref() == b"new");
    d.release(reader).await.expect("release");
    // A second write on the same handle commits again.
    d.write(fh, 3, b"er").await.expect("write");
    d.flush(fh).await.expect("flush");
    d.release(fh).await.expect("release");
    assert_eq!(get(&*d, a.id).await, b"newer");
    // Discarded writes leave the committed content.
    let fh = d.open(a.id, opts).await.expect("open");
    d.write(fh, 0, b"lost").await.expect("write");
    d.release(fh).await.expect("release");
    assert_eq!(get(&*d, a.id).await, b"newer");
}

async fn incomplete_upload_commits_nothing<D: Drive>(d: Arc<D>, dir: NodeId) {
    let a = put(&*d, dir, "f", b"intact").await;
    let opts = OpenOptions {
        write: true,
        truncate: true,
        expected_size: Some(100),
    };
    let fh = d.open(a.id, opts).await.expect("open");
    d.write(fh, 0, &[1; 60]).await.expect("write");
    assert_eq!(
        d.flush(fh).await,
        Err(FsError::Incomplete {
            expected: 100,
            written: 60
        })
    );
    d.release(fh).await.expect("release");
    assert_eq!(get(&*d, a.id).await, b"intact");

    let opts = CreateOptions {
        deferred: true,
        expected_size: Some(10),
        ..Default::default()
    };
    let (_, fh) = d.create(dir, "new", opts).await.expect("create");
    d.write(fh, 0, b"12345").await.expect("write");
    assert!(d.flush(fh).await.is_err());
    d.release(fh).await.expect("release");
    assert_eq!(d.lookup(dir, "new").await, Err(FsError::NotFound));
}

async fn partial_write_keeps_the_rest<D: Drive>(d: Arc<D>, dir: NodeId) {
    let a = put(&*d, dir, "f", b"0123456789").await;
    let opts = OpenOptions {
        write: true,
        ..Default::default()
    };
    let fh = d.open(a.id, opts).await.expect("open");
    d.write(fh, 2, b"ab").await.expect("write");
    d.write(fh, 12, b"z").await.expect("write past end");
    d.flush(fh).await.expect("flush");
    d.release(fh).await.expect("release");
    assert_eq!(get(&*d, a.id).await, b"01ab456789\0\0z");
}

async fn truncate_open_handle<D: Drive>(d: Arc<D>, dir: NodeId) {
    let a = put(&*d, dir, "f", b"0123456789").await;
    let opts = OpenOptions {
        write: true,
        ..Default::default()
    };
    let fh = d.open(a.id, opts).await.expect("open");
    d.truncate(fh, 4).await.expect("truncate");
    assert_eq!(d.handle_attr(fh).await.expect("handle_attr").size, 4);
    d.write(fh, 6, b"x").await.expect("write after the end");
    d.flush(fh).await.expect("flush");
    d.truncate(fh, 5).await.expect("truncate again");
    d.flush(fh).await.expect("flush");
    d.release(fh).await.expect("release");
    assert_eq!(get(&*d, a.id).await, b"0123\0");
    // A handle opened only for reading can't truncate.
    let fh = d.open(a.id, OpenOptions::default()).await.expect("open");
    assert!(
        d.truncate(fh, 0).await.is_err(),
        "read-only handle truncated"
    );
    d.release(fh).await.expect("release");
    assert_eq!(get(&*d, a.id).await, b"0123\0");
}

async fn read_past_end<D: Drive>(d: Arc<D>, dir: NodeId) {
    let a = put(&*d, dir, "f", b"abc").await;
    let fh = d.open(a.id, OpenOptions::default()).await.expect("open");
    assert_eq!(d.read(fh, 1, 100).await.expect("read").as_ref(), b"bc");
    assert!(d.read(fh, 3, 10).await.expect("read at end").is_empty());
    assert!(d.read(fh, 1 << 40, 10).await.expect("read far").is_empty());
    d.release(fh).await.expect("release");
    let fh = d.open(a.id, OpenOptions::default()).await.expect("open");
    assert_eq!(d.write(fh, 0, b"x").await, Err(FsError::BadHandle));
    d.release(fh).await.expect("release");
}

async fn quota_is_enforced<D: Drive>(d: Arc<D>, dir: NodeId) {
    let u = d.usage().await.expect("usage");
    assert_eq!(u.limit, Some(TEST_QUOTA));
    let half = TEST_QUOTA as usize / 2;
    let a = put(&*d, dir, "half", &vec![7; half]).await;
    // Announced size over the quota: refused before any byte.
    let opts = CreateOptions {
        deferred: true,
        expected_size: Some(TEST_QUOTA),
        ..Default::default()
    };
    assert_eq!(
        d.create(dir, "big", opts).await.map(|_| ()),
        Err(FsError::QuotaExceeded)
    );
    // A write that goes over is refused, and its handle then commits nothing at all: a copy
    // that runs out of quota leaves the old content, never a cut-off file.
    let grow = put(&*d, dir, "grow", b"old").await;
    let opts = OpenOptions {
        write: true,
        truncate: true,
        ..Default::default()
    };
    let fh = d.open(grow.id, opts).await.expect("open");
    d.write(fh, 0, &vec![1; half]).await.expect("fits exactly");
    assert_eq!(
        d.write(fh, half as u64, b"x").await,
        Err(FsError::QuotaExceeded)
    );
    assert_eq!(d.flush(fh).await.map(|_| ()), Err(FsError::QuotaExceeded));
    d.release(fh).await.expect("release");
    assert_eq!(get(&*d, grow.id).await, b"old");
    put(&*d, dir, "grow", &vec![1; half]).await;
    assert_eq!(d.usage().await.expect("usage").used, TEST_QUOTA);
    assert_eq!(d.usage().await.expect("usage").available, 0);
    assert_eq!(
        d.copy(a.id, dir, "copy").await.map(|_| ()),
        Err(FsError::QuotaExceeded)
    );
    assert_eq!(
        d.setattr(
            a.id,
            SetAttr {
                size: Some(half as u64 + 1),
                mtime: None
            }
        )
        .await
        .map(|_| ()),
        Err(FsError::QuotaExceeded)
    );
    // Replacing a file by a smaller one is always allowed.
    put(&*d, dir, "half", b"small").await;
    assert_eq!(d.usage().await.expect("usage").used, half as u64 + 5);
}

async fn usage_follows_changes<D: Drive>(d: Arc<D>, dir: NodeId) {
    let base = d.usage().await.expect("usage").used;
    let a = put(&*d, dir, "a", &[0; 1000]).await;
    assert_eq!(d.usage().await.expect("usage").used, base + 1000);
    d.copy(a.id, dir, "b").await.expect("copy");
    assert_eq!(d.usage().await.expect("usage").used, base + 2000);
    d.setattr(
        a.id,
        SetAttr {
            size: Some(10),
            mtime: None,
        },
    )
    .await
    .expect("truncate");
    assert_eq!(d.usage().await.expect("usage").used, base + 1010);
    d.rename(dir, "a", dir, "b", RenameOptions::default())
        .await
        .expect("rename over");
    assert_eq!(d.usage().await.expect("usage").used, base + 10);
    d.unlink(dir, "b").await.expect("unlink");
    assert_eq!(d.usage().await.expect("usage").used, base);
}

async fn folders<D: Drive>(d: Arc<D>, dir: NodeId) {
    let sub = d.mkdir(dir, "sub").await.expect("mkdir");
    assert!(sub.is_dir());
    assert_eq!(d.mkdir(dir, "sub").await.map(|_| ()), Err(FsError::Exists));
    let deep = d.mkdir(sub.id, "deep").await.expect("mkdir deep");
    put(&*d, deep.id, "f", b"x").await;
    assert_eq!(d.rmdir(dir, "sub").await, Err(FsError::NotEmpty));
    assert_eq!(d.rmdir(sub.id, "deep").await, Err(FsError::NotEmpty));
    d.unlink(deep.id, "f").await.expect("unlink");
    d.rmdir(sub.id, "deep").await.expect("rmdir deep");
    d.rmdir(dir, "sub").await.expect("rmdir");
    assert_eq!(d.lookup(dir, "sub").await, Err(FsError::NotFound));
    assert_eq!(d.getattr(sub.id).await, Err(FsError::NotFound));
    assert_eq!(
        d.open(dir, OpenOptions::default()).await,
        Err(FsError::IsADirectory)
    );
}

async fn removal_errors<D: Drive>(d: Arc<D>, dir: NodeId) {
    let f = put(&*d, dir, "f", b"x").await;
    d.mkdir(dir, "sub").await.expect("mkdir");
    assert_eq!(d.unlink(dir, "sub").await, Err(FsError::IsADirectory));
    assert_eq!(d.rmdir(dir, "f").await, Err(FsError::NotADirectory));
    assert_eq!(d.unlink(dir, "missing").await, Err(FsError::NotFound));
    assert_eq!(d.rmdir(dir, "missing").await, Err(FsError::NotFound));
    assert_eq!(d.lookup(f.id, "x").await, Err(FsError::NotADirectory));
    assert_eq!(
        d.mkdir(f.id, "x").await.map(|_| ()),
        Err(FsError::NotADirectory)
    );
    assert_eq!(d.list(f.id).await.map(|_| ()), Err(FsError::NotADirectory));
}

async fn rename_moves<D: Drive>(d: Arc<D>, dir: NodeId) {
    let f = put(&*d, dir, "f", b"content").await;
    let sub = d.mkdir(dir, "sub").await.expect("mkdir");
    d.rename(dir, "f", sub.id, "g", RenameOptions::default())
        .await
        .expect("rename");
    assert_eq!(d.lookup(dir, "f").await, Err(FsError::NotFound));
    let g = d.lookup(sub.id, "g").await.expect("lookup");
    assert_eq!(g.id, f.id);
    assert_eq!(get(&*d, g.id).await, b"content");
    // Folders move with their contents.
    d.rename(dir, "sub", dir, "moved", RenameOptions::default())
        .await
        .expect("rename folder");
    let moved = d.lookup(dir, "moved").await.expect("lookup");
    assert_eq!(moved.id, sub.id);
    assert_eq!(names(&*d, moved.id).await, vec!["g"]);
    // Renaming onto itself changes nothing.
    d.rename(dir, "moved", dir, "moved", RenameOptions::default())
        .await
        .expect("self rename");
    assert_eq!(names(&*d, dir).await, vec!["moved"]);
}

async fn rename_replaces<D: Drive>(d: Arc<D>, dir: NodeId) {
    put(&*d, dir, "a", b"aaa").await;
    put(&*d, dir, "b", b"b").await;
    let no = RenameOptions { no_replace: true };
    assert_eq!(d.rename(dir, "a", dir, "b", no).await, Err(FsError::Exists));
    d.rename(dir, "a", dir, "b", RenameOptions::default())
        .await
        .expect("replace");
    assert_eq!(names(&*d, dir).await, vec!["b"]);
    let b = d.lookup(dir, "b").await.expect("lookup");
    assert_eq!(get(&*d, b.id).await, b"aaa");
    d.mkdir(dir, "x").await.expect("mkdir");
    d.mkdir(dir, "y").await.expect("mkdir");
    d.rename(dir, "x", dir, "y", RenameOptions::default())
        .await
        .expect("empty folder replaced");
    assert_eq!(names(&*d, dir).await, vec!["b", "y"]);
}

async fn rename_refusals<D: Drive>(d: Arc<D>, dir: NodeId) {
    put(&*d, dir, "f", b"x").await;
    let a = d.mkdir(dir, "a").await.expect("mkdir");
    let inner = d.mkdir(a.id, "inner").await.expect("mkdir");
    let full = d.mkdir(dir, "full").await.expect("mkdir");
    put(&*d, full.id, "x", b"x").await;
    let r = RenameOptions::default();
    assert_eq!(
        d.rename(dir, "a", inner.id, "a", r).await,
        Err(FsError::MoveIntoItself)
    );
    assert_eq!(
        d.rename(dir, "a", a.id, "a", r).await,
        Err(FsError::MoveIntoItself)
    );
    assert_eq!(
        d.rename(dir, "a", dir, "f", r).await,
        Err(FsError::NotADirectory)
    );
    assert_eq!(
        d.rename(dir, "f", dir, "a", r).await,
        Err(FsError::IsADirectory)
    );
    assert_eq!(
        d.rename(dir, "a", dir, "full", r).await,
        Err(FsError::NotEmpty)
    );
    assert_eq!(
        d.rename(dir, "nope", dir, "x", r).await,
        Err(FsError::NotFound)
    );
    assert_eq!(names(&*d, dir).await, vec!["a", "f", "full"]);
}

async fn names_are_checked<D: Drive>(d: Arc<D>, dir: NodeId) {
    let long = "n".repeat(256);
    for bad in ["", ".", "..", "a/b", "nul\0", "tab\t", "\u{1b}[31m"] {
        assert!(
            matches!(d.mkdir(dir, bad).await, Err(FsError::InvalidName(_))),
            "mkdir {bad:?}"
        );
        assert!(
            matches!(
                d.create(dir, bad, CreateOptions::default()).await,
                Err(FsError::InvalidName(_))
            ),
            "create {bad:?}"
        );
    }
    assert_eq!(
        d.mkdir(dir, &long).await.map(|_| ()),
        Err(FsError::NameTooLong)
    );
    put(&*d, dir, "ok", b"x").await;
    assert!(matches!(
        d.rename(dir, "ok", dir, "a/b", RenameOptions::default())
            .await,
        Err(FsError::InvalidName(_))
    ));
    assert_eq!(
        d.rename(dir, "ok", dir, &long, RenameOptions::default())
            .await,
        Err(FsError::NameTooLong)
    );
    let max = "m".repeat(255);
    d.mkdir(dir, &max).await.expect("255 bytes is allowed");
    d.mkdir(dir, "日本語 ünïcode").await.expect("unicode");
    assert_eq!(names(&*d, dir).await.len(), 3);
}

async fn copy_is_independent<D: Drive>(d: Arc<D>, dir: NodeId) {
    let a = put(&*d, dir, "a", b"original").await;
    d.set_xattrs(
        a.id,
        vec![XattrChange {
            name: "k".into(),
            value: Some(b"v".to_vec()),
        }],
    )
    .await
    .expect("set xattr");
    let b = d.copy(a.id, dir, "b").await.expect("copy");
    assert_ne!(a.id, b.id);
    assert_eq!(b.size, 8);
    assert_eq!(get(&*d, b.id).await, b"original");
    assert_eq!(
        d.xattrs(b.id).await.expect("xattrs"),
        vec![("k".into(), b"v".to_vec())]
    );
    put(&*d, dir, "a", b"changed").await;
    assert_eq!(get(&*d, b.id).await, b"original");
    assert_eq!(
        d.copy(a.id, dir, "b").await.map(|_| ()),
        Err(FsError::Exists)
    );
    assert_eq!(
        d.copy(dir, dir, "c").await.map(|_| ()),
        Err(FsError::IsADirectory)
    );
}

async fn setattr_truncates_and_extends<D: Drive>(d: Arc<D>, dir: NodeId) {
    let a = put(&*d, dir, "a", b"0123456789").await;
    let t = d
        .setattr(
            a.id,
            SetAttr {
                size: Some(4),
                mtime: None,
            },
        )
        .await
        .expect("truncate");
    assert_eq!(t.size, 4);
    assert_eq!(get(&*d, a.id).await, b"0123");
    d.setattr(
        a.id,
        SetAttr {
            size: Some(6),
            mtime: None,
        },
    )
    .await
    .expect("extend");
    assert_eq!(get(&*d, a.id).await, b"0123\0\0");
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let m = d
        .setattr(
            a.id,
            SetAttr {
                size: None,
                mtime: Some(when),
            },
        )
        .await
        .expect("mtime");
    assert_eq!(m.mtime, when);
    assert_eq!(d.getattr(a.id).await.expect("getattr").mtime, when);
    assert_eq!(
        d.setattr(
            dir,
            SetAttr {
                size: Some(0),
                mtime: None
            }
        )
        .await
        .map(|_| ()),
        Err(FsError::IsADirectory)
    );
}

async fn xattrs_round_trip<D: Drive>(d: Arc<D>, dir: NodeId) {
    let set = |name: &str, value: Option<&[u8]>| XattrChange {
        name: name.into(),
        value: value.map(<[u8]>::to_vec),
    };
    d.set_xattrs(dir, vec![set("b", Some(b"2")), set("a", Some(b"1"))])
        .await
        .expect("set");
    assert_eq!(
        d.xattrs(dir).await.expect("get"),
        vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]
    );
    d.set_xattrs(dir, vec![set("a", None), set("b", Some(b"3"))])
        .await
        .expect("change");
    assert_eq!(
        d.xattrs(dir).await.expect("get"),
        vec![("b".into(), b"3".to_vec())]
    );
    let f = put(&*d, dir, "f", b"x").await;
    assert!(d.xattrs(f.id).await.expect("none").is_empty());
    d.unlink(dir, "f").await.expect("unlink");
    assert_eq!(d.xattrs(f.id).await, Err(FsError::NotFound));
}

async fn list_is_sorted_with_attrs<D: Drive>(d: Arc<D>, dir: NodeId) {
    for name in ["b", "a", "c"] {
        put(&*d, dir, name, name.as_bytes()).await;
    }
    d.mkdir(dir, "d").await.expect("mkdir");
    let list = d.list(dir).await.expect("list");
    let got: Vec<_> = list
        .iter()
        .map(|e| (e.name.as_str(), e.attr.kind, e.attr.size))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", NodeKind::File, 1),
            ("b", NodeKind::File, 1),
            ("c", NodeKind::File, 1),
            ("d", NodeKind::Dir, 0)
        ]
    );
}

async fn resolve_walks_paths<D: Drive>(d: Arc<D>, dir: NodeId) {
    let sub = d.mkdir(dir, "sub").await.expect("mkdir");
    let f = put(&*d, sub.id, "f", b"x").await;
    assert_eq!(d.resolve(&[]).await.expect("root").id, d.root());
    assert_eq!(
        d.resolve(&["conformance", "sub", "f"])
            .await
            .expect("resolve")
            .id,
        f.id
    );
    assert_eq!(
        d.resolve(&["conformance", "nope"]).await,
        Err(FsError::NotFound)
    );
    assert_eq!(
        d.resolve(&["conformance", "sub", "f", "x"]).await,
        Err(FsError::NotADirectory)
    );
}

async fn handles_are_checked<D: Drive>(d: Arc<D>, _dir: NodeId) {
    let bogus = FileHandle(u64::MAX - 7);
    assert_eq!(d.read(bogus, 0, 1).await, Err(FsError::BadHandle));
    assert_eq!(d.write(bogus, 0, b"x").await, Err(FsError::BadHandle));
    assert_eq!(d.flush(bogus).await.map(|_| ()), Err(FsError::BadHandle));
    assert_eq!(d.release(bogus).await, Err(FsError::BadHandle));
}

async fn concurrent_creates<D: Drive>(d: Arc<D>, dir: NodeId) {
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let d = d.clone();
            tokio::spawn(async move {
                let name = format!("f{i:02}");
                put(&*d, dir, &name, name.as_bytes()).await;
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let list = names(&*d, dir).await;
    assert_eq!(list.len(), 32);
    assert_eq!(d.usage().await.expect("usage").used, 32 * 3);
}
