//! A `Drive` kept in memory: for tests, examples, and as the reference the conformance suite
//! was written against.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    check_complete, check_name, Attr, CreateOptions, DirEntry, Drive, FileHandle, FsError,
    FsResult, NodeId, NodeKind, OpenOptions, RenameOptions, SetAttr, Usage, XattrChange,
};

const ROOT: NodeId = NodeId(1);

/// An in-memory drive with an optional quota.
pub struct MemoryDrive {
    state: Mutex<State>,
}

struct Node {
    parent: NodeId,
    name: String,
    kind: NodeKind,
    data: Arc<Vec<u8>>,
    children: BTreeMap<String, NodeId>,
    mtime: SystemTime,
    ctime: SystemTime,
    version: u64,
    xattrs: BTreeMap<String, Vec<u8>>,
}

struct Handle {
    /// `None` until a deferred create commits.
    node: Option<NodeId>,
    /// Where a deferred create will appear.
    deferred: Option<(NodeId, String)>,
    /// What reads see: the staged content when writable, a snapshot otherwise.
    data: Arc<Vec<u8>>,
    writable: bool,
    dirty: bool,
    expected: Option<u64>,
    written: u64,
    /// Why a write or truncate failed: the handle then never commits.
    failed: Option<FsError>,
}

struct State {
    nodes: HashMap<NodeId, Node>,
    handles: HashMap<FileHandle, Handle>,
    next_node: u64,
    next_handle: u64,
    used: u64,
    limit: Option<u64>,
}

impl Default for MemoryDrive {
    fn default() -> Self {
        Self::new(None)
    }
}

impl MemoryDrive {
    fn write_staged(&self, fh: FileHandle, offset: u64, data: &[u8]) -> FsResult<u32> {
        let mut st = self.state();
        let (used, limit) = (st.used, st.limit);
        let committed = match st.handle(fh)?.node {
            Some(id) => st.node(id).map(|n| n.data.len() as u64).unwrap_or(0),
            None => 0,
        };
        let h = st.handle_mut(fh)?;
        if !h.writable {
            return Err(FsError::BadHandle);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FsError::InvalidArgument("offset too large"))?;
        let new_len = end.max(h.data.len() as u64);
        if !fits(used, limit, committed, new_len) {
            return Err(FsError::QuotaExceeded);
        }
        let buf = Arc::make_mut(&mut h.data);
        let end = usize::try_from(end).map_err(|_| FsError::InvalidArgument("offset too large"))?;
        if buf.len() < end {
            buf.resize(end, 0);
        }
        buf[end - data.len()..end].copy_from_slice(data);
        h.dirty = true;
        h.written += data.len() as u64;
        Ok(data.len() as u32)
    }

    fn truncate_staged(&self, fh: FileHandle, size: u64) -> FsResult<()> {
        let mut st = self.state();
        let (used, limit) = (st.used, st.limit);
        let committed = match st.handle(fh)?.node {
            Some(id) => st.node(id).map(|n| n.data.len() as u64).unwrap_or(0),
            None => 0,
        };
        let h = st.handle_mut(fh)?;
        if !h.writable {
            return Err(FsError::BadHandle);
        }
        if !fits(used, limit, committed, size) {
            return Err(FsError::QuotaExceeded);
        }
        let len = usize::try_from(size).map_err(|_| FsError::InvalidArgument("size"))?;
        Arc::make_mut(&mut h.data).resize(len, 0);
        h.dirty = true;
        Ok(())
    }

    fn commit_staged(&self, fh: FileHandle) -> FsResult<Attr> {
        let mut st = self.state();
        let h = st.handle(fh)?;
        if !h.dirty {
            return match h.node {
                Some(id) => Ok(st.node(id)?.attr(id)),
                None => Err(FsError::BadHandle),
            };
        }
        check_complete(h.expected, h.written)?;
        let data = h.data.clone();
        let id = match (h.node, h.deferred.clone()) {
            (Some(id), _) => id,
            (None, Some((parent, name))) => {
                // A deferred create appears now; whatever took the name meanwhile is replaced
                // if it is a file, as a later upload would.
                match st.child(parent, &name) {
                    Ok(id) if st.node(id)?.kind == NodeKind::Dir => {
                        return Err(FsError::IsADirectory)
                    }
                    Ok(id) => id,
                    Err(FsError::NotFound) => {
                        if !fits(st.used, st.limit, 0, data.len() as u64) {
                            return Err(FsError::QuotaExceeded);
                        }
                        st.insert(parent, &name, NodeKind::File)
                    }
                    Err(e) => return Err(e),
                }
            }
            (None, None) => return Err(FsError::BadHandle),
        };
        let attr = st.set_content(id, data)?;
        let h = st.handle_mut(fh)?;
        h.node = Some(id);
        h.deferred = None;
        h.dirty = false;
        Ok(attr)
    }

    /// A handle whose write failed never commits: see `Drive::flush`.
    fn note_failure<T>(&self, fh: FileHandle, result: &FsResult<T>) {
        if let Err(e) = result {
            let mut st = self.state();
            if let Ok(h) = st.handle_mut(fh) {
                if h.writable {
                    h.failed = Some(e.clone());
                }
            }
        }
    }

    /// An empty drive; `quota` limits the bytes its files may take.
    pub fn new(quota: Option<u64>) -> Self {
        let now = SystemTime::now();
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(ROOT, String::new(), NodeKind::Dir, now));
        MemoryDrive {
            state: Mutex::new(State {
                nodes,
                handles: HashMap::new(),
                next_node: ROOT.0 + 1,
                next_handle: 1,
                used: 0,
                limit: quota,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can't leave the maps half-updated in a way that
        // matters more than refusing all further work would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Node {
    fn new(parent: NodeId, name: String, kind: NodeKind, now: SystemTime) -> Node {
        Node {
            parent,
            name,
            kind,
            data: Arc::new(Vec::new()),
            children: BTreeMap::new(),
            mtime: now,
            ctime: now,
            version: 0,
            xattrs: BTreeMap::new(),
        }
    }

    fn attr(&self, id: NodeId) -> Attr {
        Attr {
            id,
            kind: self.kind,
            size: self.data.len() as u64,
            mtime: self.mtime,
            ctime: self.ctime,
            version: self.version,
            read_only: false,
            has_xattrs: !self.xattrs.is_empty(),
            volatile: false,
        }
    }
}

/// Whether replacing `old` bytes by `new` keeps `used` within `limit`.
fn fits(used: u64, limit: Option<u64>, old: u64, new: u64) -> bool {
    match limit {
        Some(limit) if new > old => used.saturating_sub(old).saturating_add(new) <= limit,
        _ => true,
    }
}

impl State {
    fn node(&self, id: NodeId) -> FsResult<&Node> {
        self.nodes.get(&id).ok_or(FsError::NotFound)
    }

    fn node_mut(&mut self, id: NodeId) -> FsResult<&mut Node> {
        self.nodes.get_mut(&id).ok_or(FsError::NotFound)
    }

    fn dir(&self, id: NodeId) -> FsResult<&Node> {
        let node = self.node(id)?;
        if node.kind != NodeKind::Dir {
            return Err(FsError::NotADirectory);
        }
        Ok(node)
    }

    fn child(&self, parent: NodeId, name: &str) -> FsResult<NodeId> {
        self.dir(parent)?
            .children
            .get(name)
            .copied()
            .ok_or(FsError::NotFound)
    }

    fn handle(&self, fh: FileHandle) -> FsResult<&Handle> {
        self.handles.get(&fh).ok_or(FsError::BadHandle)
    }

    fn handle_mut(&mut self, fh: FileHandle) -> FsResult<&mut Handle> {
        self.handles.get_mut(&fh).ok_or(FsError::BadHandle)
    }

    fn add_handle(&mut self, handle: Handle) -> FileHandle {
        let fh = FileHandle(self.next_handle);
        self.next_handle += 1;
        self.handles.insert(fh, handle);
        fh
    }

    fn insert(&mut self, parent: NodeId, name: &str, kind: NodeKind) -> NodeId {
        let id = NodeId(self.next_node);
        self.next_node += 1;
        let now = SystemTime::now();
        self.nodes
            .insert(id, Node::new(parent, name.to_owned(), kind, now));
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.insert(name.to_owned(), id);
            p.mtime = now;
            p.ctime = now;
        }
        id
    }

    /// Unlinks `id` from its parent and forgets it, returning the bytes it took.
    fn remove(&mut self, id: NodeId) -> u64 {
        let Some(node) = self.nodes.remove(&id) else {
            return 0;
        };
        let now = SystemTime::now();
        if let Some(p) = self.nodes.get_mut(&node.parent) {
            p.children.remove(&node.name);
            p.mtime = now;
            p.ctime = now;
        }
        let size = node.data.len() as u64;
        self.used -= size;
        size
    }

    fn is_ancestor(&self, ancestor: NodeId, mut id: NodeId) -> bool {
        loop {
            if id == ancestor {
                return true;
            }
            match self.nodes.get(&id) {
                Some(n) if id != ROOT => id = n.parent,
                _ => return false,
            }
        }
    }

    fn set_content(&mut self, id: NodeId, data: Arc<Vec<u8>>) -> FsResult<Attr> {
        let old = self.node(id)?.data.len() as u64;
        let new = data.len() as u64;
        if !fits(self.used, self.limit, old, new) {
            return Err(FsError::QuotaExceeded);
        }
        self.used = self.used - old + new;
        let now = SystemTime::now();
        let node = self.node_mut(id)?;
        node.data = data;
        node.mtime = now;
        node.ctime = now;
        node.version += 1;
        Ok(node.attr(id))
    }
}

#[async_trait]
impl Drive for MemoryDrive {
    fn root(&self) -> NodeId {
        ROOT
    }

    async fn lookup(&self, parent: NodeId, name: &str) -> FsResult<Attr> {
        let st = self.state();
        let id = st.child(parent, name)?;
        Ok(st.node(id)?.attr(id))
    }

    async fn getattr(&self, node: NodeId) -> FsResult<Attr> {
        Ok(self.state().node(node)?.attr(node))
    }

    async fn list(&self, dir: NodeId) -> FsResult<Vec<DirEntry>> {
        let st = self.state();
        st.dir(dir)?
            .children
            .iter()
            .map(|(name, &id)| {
                Ok(DirEntry {
                    name: name.clone(),
                    attr: st.node(id)?.attr(id),
                })
            })
            .collect()
    }

    async fn open(&self, node: NodeId, opts: OpenOptions) -> FsResult<FileHandle> {
        let mut st = self.state();
        let n = st.node(node)?;
        if n.kind == NodeKind::Dir {
            return Err(FsError::IsADirectory);
        }
        let (data, dirty) = match (opts.write, opts.truncate) {
            (true, true) => (Arc::new(Vec::new()), true),
            (true, false) => (Arc::new(n.data.as_ref().clone()), false),
            (false, _) => (n.data.clone(), false),
        };
        if let Some(expected) = opts.expected_size.filter(|_| opts.write) {
            let base = if opts.truncate {
                0
            } else {
                n.data.len() as u64
            };
            if !fits(st.used, st.limit, n.data.len() as u64, base.max(expected)) {
                return Err(FsError::QuotaExceeded);
            }
        }
        Ok(st.add_handle(Handle {
            node: Some(node),
            deferred: None,
            data,
            writable: opts.write,
            dirty,
            expected: opts.expected_size,
            written: 0,
            failed: None,
        }))
    }

    async fn create(
        &self,
        parent: NodeId,
        name: &str,
        opts: CreateOptions,
    ) -> FsResult<(Attr, FileHandle)> {
        check_name(name)?;
        let mut st = self.state();
        st.dir(parent)?;
        let existing = st.child(parent, name).ok();
        let old = match existing {
            Some(_) if opts.exclusive => return Err(FsError::Exists),
            Some(id) => {
                let n = st.node(id)?;
                if n.kind == NodeKind::Dir {
                    return Err(FsError::IsADirectory);
                }
                n.data.len() as u64
            }
            None => 0,
        };
        if let Some(expected) = opts.expected_size {
            if !fits(st.used, st.limit, old, expected) {
                return Err(FsError::QuotaExceeded);
            }
        }
        let (node, deferred) = match existing {
            Some(id) => (Some(id), None),
            None if opts.deferred => (None, Some((parent, name.to_owned()))),
            None => (Some(st.insert(parent, name, NodeKind::File)), None),
        };
        let fh = st.add_handle(Handle {
            node,
            deferred,
            data: Arc::new(Vec::new()),
            writable: true,
            dirty: true,
            expected: opts.expected_size,
            written: 0,
            failed: None,
        });
        let attr = match node {
            Some(id) => Attr {
                size: 0,
                ..st.node(id)?.attr(id)
            },
            None => Attr::uncommitted_file(SystemTime::now()),
        };
        Ok((attr, fh))
    }

    async fn read(&self, fh: FileHandle, offset: u64, len: u32) -> FsResult<Bytes> {
        let st = self.state();
        let data = &st.handle(fh)?.data;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(len as usize).min(data.len());
        Ok(Bytes::copy_from_slice(&data[start..end]))
    }

    async fn write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> FsResult<u32> {
        let result = self.write_staged(fh, offset, data);
        self.note_failure(fh, &result);
        result
    }

    async fn truncate(&self, fh: FileHandle, size: u64) -> FsResult<()> {
        let result = self.truncate_staged(fh, size);
        self.note_failure(fh, &result);
        result
    }

    async fn flush(&self, fh: FileHandle) -> FsResult<Attr> {
        if let Some(e) = &self.state().handle(fh)?.failed {
            return Err(e.clone());
        }
        self.commit_staged(fh)
    }

    async fn release(&self, fh: FileHandle) -> FsResult<()> {
        self.state()
            .handles
            .remove(&fh)
            .map(|_| ())
            .ok_or(FsError::BadHandle)
    }

    async fn handle_attr(&self, fh: FileHandle) -> FsResult<Attr> {
        let st = self.state();
        let h = st.handle(fh)?;
        let mut attr = match h.node {
            Some(id) => st.node(id)?.attr(id),
            None => Attr::uncommitted_file(SystemTime::now()),
        };
        attr.size = h.data.len() as u64;
        Ok(attr)
    }

    async fn mkdir(&self, parent: NodeId, name: &str) -> FsResult<Attr> {
        check_name(name)?;
        let mut st = self.state();
        match st.child(parent, name) {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let id = st.insert(parent, name, NodeKind::Dir);
        Ok(st.node(id)?.attr(id))
    }

    async fn unlink(&self, parent: NodeId, name: &str) -> FsResult<()> {
        let mut st = self.state();
        let id = st.child(parent, name)?;
        if st.node(id)?.kind == NodeKind::Dir {
            return Err(FsError::IsADirectory);
        }
        st.remove(id);
        Ok(())
    }

    async fn rmdir(&self, parent: NodeId, name: &str) -> FsResult<()> {
        let mut st = self.state();
        let id = st.child(parent, name)?;
        let node = st.node(id)?;
        if node.kind != NodeKind::Dir {
            return Err(FsError::NotADirectory);
        }
        if !node.children.is_empty() {
            return Err(FsError::NotEmpty);
        }
        st.remove(id);
        Ok(())
    }

    async fn rename(
        &self,
        parent: NodeId,
        name: &str,
        new_parent: NodeId,
        new_name: &str,
        opts: RenameOptions,
    ) -> FsResult<()> {
        let mut st = self.state();
        let id = st.child(parent, name)?;
        check_name(new_name)?;
        st.dir(new_parent)?;
        let kind = st.node(id)?.kind;
        if kind == NodeKind::Dir && st.is_ancestor(id, new_parent) {
            return Err(FsError::MoveIntoItself);
        }
        match st.child(new_parent, new_name) {
            Ok(target) if target == id => return Ok(()),
            Ok(_) if opts.no_replace => return Err(FsError::Exists),
            Ok(target) => {
                let t = st.node(target)?;
                match (kind, t.kind) {
                    (NodeKind::Dir, NodeKind::File) => return Err(FsError::NotADirectory),
                    (NodeKind::File, NodeKind::Dir) => return Err(FsError::IsADirectory),
                    (NodeKind::Dir, NodeKind::Dir) if !t.children.is_empty() => {
                        return Err(FsError::NotEmpty)
                    }
                    _ => {}
                }
                st.remove(target);
            }
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let now = SystemTime::now();
        for p in [parent, new_parent] {
            let p = st.node_mut(p)?;
            p.mtime = now;
            p.ctime = now;
        }
        st.node_mut(parent)?.children.remove(name);
        st.node_mut(new_parent)?
            .children
            .insert(new_name.to_owned(), id);
        let node = st.node_mut(id)?;
        node.parent = new_parent;
        node.name = new_name.to_owned();
        node.ctime = now;
        Ok(())
    }

    async fn copy(&self, node: NodeId, new_parent: NodeId, new_name: &str) -> FsResult<Attr> {
        check_name(new_name)?;
        let mut st = self.state();
        let src = st.node(node)?;
        if src.kind == NodeKind::Dir {
            return Err(FsError::IsADirectory);
        }
        let (data, mtime, xattrs) = (src.data.clone(), src.mtime, src.xattrs.clone());
        match st.child(new_parent, new_name) {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        if !fits(st.used, st.limit, 0, data.len() as u64) {
            return Err(FsError::QuotaExceeded);
        }
        let id = st.insert(new_parent, new_name, NodeKind::File);
        st.set_content(id, data)?;
        let n = st.node_mut(id)?;
        n.mtime = mtime;
        n.xattrs = xattrs;
        Ok(n.attr(id))
    }

    async fn setattr(&self, node: NodeId, changes: SetAttr) -> FsResult<Attr> {
        let mut st = self.state();
        let n = st.node(node)?;
        if let Some(size) = changes.size {
            if n.kind == NodeKind::Dir {
                return Err(FsError::IsADirectory);
            }
            let len = usize::try_from(size).map_err(|_| FsError::InvalidArgument("size"))?;
            if !fits(st.used, st.limit, n.data.len() as u64, size) {
                return Err(FsError::QuotaExceeded);
            }
            let mut data = n.data.as_ref().clone();
            data.resize(len, 0);
            st.set_content(node, Arc::new(data))?;
        }
        let n = st.node_mut(node)?;
        if let Some(mtime) = changes.mtime {
            n.mtime = mtime;
        }
        n.ctime = SystemTime::now();
        Ok(n.attr(node))
    }

    async fn usage(&self) -> FsResult<Usage> {
        let st = self.state();
        Ok(Usage {
            used: st.used,
            limit: st.limit,
            available: st.limit.map_or(u64::MAX / 2, |l| l.saturating_sub(st.used)),
            nodes: st.nodes.len() as u64,
        })
    }

    async fn xattrs(&self, node: NodeId) -> FsResult<Vec<(String, Vec<u8>)>> {
        let st = self.state();
        Ok(st
            .node(node)?
            .xattrs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn set_xattrs(&self, node: NodeId, changes: Vec<XattrChange>) -> FsResult<()> {
        let mut st = self.state();
        let n = st.node_mut(node)?;
        for c in changes {
            match c.value {
                Some(v) => n.xattrs.insert(c.name, v),
                None => n.xattrs.remove(&c.name),
            };
        }
        n.ctime = SystemTime::now();
        Ok(())
    }
}
