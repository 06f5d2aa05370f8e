//! Inode numbers: which drive and node each one is.
//!
//! A stored node's inode number is computed from (drive slot, node id), so it stays the same
//! when the kernel forgets an inode and looks it up again, and needs no table. Nodes with ids
//! too large to fit (virtual ones, such as a status file) get counted numbers from a table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::{Drive, FsError, FsResult, NodeId};

/// The mount's root: one drive's root, or the folder of all drives.
pub const ROOT_INO: u64 = 1;
/// Bits of an inode number that hold the node id; the bits above hold the slot.
const NODE_BITS: u32 = 47;
const NODE_MASK: u64 = (1 << NODE_BITS) - 1;
/// Most drives one mount shows.
pub const MAX_SLOTS: usize = (1 << (64 - NODE_BITS)) - 1;

/// What an inode number stands for.
#[derive(Clone)]
pub enum Target {
    /// The folder listing every drive (`Tree::Users` only).
    Drives,
    /// A node of the drive in `slot`.
    Node {
        slot: u16,
        drive: Arc<dyn Drive>,
        node: NodeId,
    },
}

/// A drive shown by the mount.
struct Slot {
    name: String,
    drive: Arc<dyn Drive>,
}

/// The drives the mount has shown, by slot (index + 1), and the counted inode numbers.
pub struct Inodes {
    /// The root node of the drive at the mount's root, when the mount shows a single drive
    /// (slot 1); `None` for a folder of drives.
    single: Option<NodeId>,
    slots: RwLock<Vec<Slot>>,
    counted: Mutex<Counted>,
}

#[derive(Default)]
struct Counted {
    by_node: HashMap<(u16, NodeId), u64>,
    by_ino: HashMap<u64, (u16, NodeId)>,
    next: u64,
}

impl Inodes {
    /// Inode numbers for one drive mounted at the root.
    pub fn single(drive: Arc<dyn Drive>) -> Inodes {
        let root = drive.root();
        let inodes = Inodes::many();
        inodes.slots_mut().push(Slot {
            name: String::new(),
            drive,
        });
        Inodes {
            single: Some(root),
            ..inodes
        }
    }

    /// Inode numbers for a folder of drives, added with `slot_of`.
    pub fn many() -> Inodes {
        Inodes {
            single: None,
            slots: RwLock::new(Vec::new()),
            counted: Mutex::new(Counted {
                next: ROOT_INO + 1,
                ..Counted::default()
            }),
        }
    }

    fn slots_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Slot>> {
        self.slots.write().unwrap_or_else(|e| e.into_inner())
    }

    fn slots(&self) -> std::sync::RwLockReadGuard<'_, Vec<Slot>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot of drive `name`, made or updated for `drive`. Returns the slot and whether
    /// its drive is new (a new slot, or the name now has another drive): watch it then.
    pub fn slot_of(&self, name: &str, drive: &Arc<dyn Drive>) -> FsResult<(u16, bool)> {
        let mut slots = self.slots_mut();
        if let Some(i) = slots.iter().position(|s| s.name == name) {
            let replaced = slots[i].drive.root() != drive.root();
            if replaced {
                slots[i].drive = drive.clone();
            }
            return Ok((i as u16 + 1, replaced));
        }
        if slots.len() >= MAX_SLOTS {
            return Err(FsError::NoSpace);
        }
        slots.push(Slot {
            name: name.to_owned(),
            drive: drive.clone(),
        });
        Ok((slots.len() as u16, true))
    }

    /// The drive in `slot`.
    pub fn drive(&self, slot: u16) -> FsResult<Arc<dyn Drive>> {
        let slots = self.slots();
        match slots.get(usize::from(slot).wrapping_sub(1)) {
            Some(s) => Ok(s.drive.clone()),
            None => Err(FsError::NotFound),
        }
    }

    /// The inode number of `node` in the drive in `slot`.
    pub fn ino(&self, slot: u16, node: NodeId) -> u64 {
        if slot == 1 && self.single == Some(node) {
            return ROOT_INO;
        }
        if node.0 <= NODE_MASK && node.0 != 0 {
            return (u64::from(slot) << NODE_BITS) | node.0;
        }
        let mut counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ino) = counted.by_node.get(&(slot, node)) {
            return *ino;
        }
        let ino = counted.next;
        counted.next += 1;
        counted.by_node.insert((slot, node), ino);
        counted.by_ino.insert(ino, (slot, node));
        ino
    }

    /// What inode number `ino` stands for.
    pub fn target(&self, ino: u64) -> FsResult<Target> {
        let (slot, node) = if ino == ROOT_INO {
            match self.single {
                Some(root) => (1, root),
                None => return Ok(Target::Drives),
            }
        } else if ino >> NODE_BITS == 0 {
            let counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
            *counted.by_ino.get(&ino).ok_or(FsError::NotFound)?
        } else {
            ((ino >> NODE_BITS) as u16, NodeId(ino & NODE_MASK))
        };
        Ok(Target::Node {
            slot,
            drive: self.drive(slot)?,
            node,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryDrive;

    #[test]
    fn numbers_round_trip() {
        let inodes = Inodes::many();
        let a: Arc<dyn Drive> = Arc::new(MemoryDrive::default());
        let b: Arc<dyn Drive> = Arc::new(MemoryDrive::default());
        let (sa, new_a) = inodes.slot_of("a", &a).expect("slot");
        let (sb, _) = inodes.slot_of("b", &b).expect("slot");
        assert!(new_a);
        assert_ne!(sa, sb);
        assert_eq!(inodes.slot_of("a", &a).expect("slot"), (sa, false));
        for (slot, node) in [(sa, NodeId(1)), (sb, NodeId(1)), (sb, NodeId(1 << 62))] {
            let ino = inodes.ino(slot, node);
            assert_ne!(ino, ROOT_INO);
            match inodes.target(ino).expect("target") {
                Target::Node {
                    slot: s, node: n, ..
                } => assert_eq!((s, n), (slot, node)),
                Target::Drives => panic!("not the root"),
            }
        }
        assert!(matches!(inodes.target(ROOT_INO), Ok(Target::Drives)));
        assert_eq!(
            inodes.ino(sb, NodeId(1 << 62)),
            inodes.ino(sb, NodeId(1 << 62))
        );
    }

    #[test]
    fn single_drive_root_is_the_mount_root() {
        let d: Arc<dyn Drive> = Arc::new(MemoryDrive::default());
        let root = d.root();
        let inodes = Inodes::single(d);
        assert_eq!(inodes.ino(1, root), ROOT_INO);
        match inodes.target(ROOT_INO).expect("target") {
            Target::Node { node, .. } => assert_eq!(node, root),
            Target::Drives => panic!("a single drive"),
        }
    }
}
