//! Usage drift: each user's bytes and node count, recomputed from their tree. The counters
//! are kept up to date by every change; this catches what a bug or a manual repair broke.

use std::sync::Arc;

use super::{JanitorError, Report};
use crate::drive::Storage;
use crate::size::format_size;
use crate::store::{Kind, WriteTx};

/// (bytes of files, nodes) of the tree under `root`, root included.
fn tree_usage(tx: &WriteTx, root: u64) -> Result<(u64, u64), JanitorError> {
    let (mut used, mut nodes) = (0u64, 0u64);
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        let Some(rec) = tx.node(id)? else { continue };
        nodes += 1;
        match rec.kind {
            Kind::File => used += rec.size,
            Kind::Dir => stack.extend(tx.children(id)?.into_iter().map(|(_, child)| child)),
        }
    }
    Ok((used, nodes))
}

pub(super) fn run(storage: &Arc<Storage>, dry_run: bool) -> Result<Report, JanitorError> {
    let users = storage.store().read(|tx| tx.users())?;
    let mut report = Report::default();
    for user in users {
        // One transaction per user: the tree and its counters are read and fixed together.
        let action = storage.store().write(|tx| -> Result<_, JanitorError> {
            let (used, nodes) = tx.usage(user.id)?;
            let (real_used, real_nodes) = tree_usage(tx, user.root)?;
            if (used, nodes) == (real_used, real_nodes) {
                return Ok(None);
            }
            if !dry_run {
                tx.set_usage(user.id, real_used, real_nodes)?;
            }
            let diff = real_used as i128 - used as i128;
            Ok(Some(format!(
                "user {}: usage {} counted, {} in the tree ({}{} bytes), nodes {} counted, {} in the tree{}",
                user.name,
                format_size(used),
                format_size(real_used),
                if diff >= 0 { "+" } else { "" },
                diff,
                nodes,
                real_nodes,
                if dry_run { "" } else { ": corrected" }
            )))
        })?;
        report.actions.extend(action);
    }
    Ok(report)
}
