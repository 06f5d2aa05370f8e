//! The daemon's management operations, independent of how they are called: directly by the
//! CLI when no daemon runs, or over the control socket when one does.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::janitor::{Janitor, Job};
use crate::torrents::status::{transfers_of, TransferInfo};
use crate::users::{UserError, UserInfo, Users};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    UserAdd {
        name: String,
        password: String,
        quota: Option<u64>,
    },
    UserList,
    UserPasswd {
        name: String,
        password: String,
    },
    UserRemove {
        name: String,
    },
    UserQuota {
        name: String,
        quota: Option<u64>,
    },
    /// Transfers of one user, or of all.
    Transfers {
        user: Option<String>,
    },
    /// Drops a `.torrent` or `.magnet` file into a user's `/Add`.
    Add {
        user: String,
        name: String,
        /// The file's bytes, base64.
        data: String,
    },
    /// Makes an API token for a user.
    TokenCreate {
        user: String,
        name: String,
    },
    TokenList {
        user: String,
    },
    TokenRevoke {
        user: String,
        id: String,
    },
    /// Backs the data dir up into `dest` (a path on the daemon's machine).
    Backup {
        dest: std::path::PathBuf,
    },
    /// Runs a janitor job now.
    Janitor {
        job: Job,
        dry_run: bool,
        /// Overrides the daemon's orphan grace period, in seconds.
        grace: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    Done,
    Users {
        users: Vec<UserInfo>,
    },
    Transfers {
        transfers: Vec<TransferInfo>,
    },
    Added {
        name: String,
    },
    Report {
        actions: Vec<String>,
    },
    BackedUp {
        report: crate::backup::BackupReport,
    },
    Token {
        token: String,
        info: crate::tokens::TokenInfo,
    },
    Tokens {
        tokens: Vec<crate::tokens::TokenInfo>,
    },
    Error {
        message: String,
    },
}

/// Runs a future to completion from blocking code: on the daemon's runtime when there is
/// one (the control socket runs requests on its blocking threads), else on a small one.
fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output, UserError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Ok(handle.block_on(fut)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(fut))
            .map_err(|e| UserError::Invalid(format!("cannot start a runtime: {e}"))),
    }
}

/// Called after a user is removed, so front ends can drop what they hold for them.
pub type RemovedHook = Box<dyn Fn(&str) + Send + Sync>;

pub struct Api {
    users: Arc<Users>,
    data: std::path::PathBuf,
    janitor: Arc<Janitor>,
    on_removed: Option<RemovedHook>,
}

impl Api {
    fn add(&self, user: &str, name: &str, data: &str) -> Result<Reply, UserError> {
        use base64::Engine as _;
        let rec = self.users.get(user)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| UserError::Invalid(format!("bad file data: {e}")))?;
        let drive = self.users.storage().drive(&rec);
        let dropped = block_on(drive.drop_file(name, &bytes))?
            .map_err(|e| UserError::Invalid(format!("adding to /Add: {e}")))?;
        Ok(Reply::Added { name: dropped })
    }

    fn transfers(&self, user: Option<&str>) -> Result<Reply, UserError> {
        let users = match user {
            Some(name) => vec![self.users.get(name)?],
            None => self.users.all()?,
        };
        let mut transfers = Vec::new();
        for u in users {
            transfers.extend(transfers_of(self.users.storage(), u.id, &u.name)?);
        }
        Ok(Reply::Transfers { transfers })
    }

    pub fn new(
        users: Arc<Users>,
        data: std::path::PathBuf,
        janitor: Arc<Janitor>,
        on_removed: Option<RemovedHook>,
    ) -> Api {
        Api {
            users,
            data,
            janitor,
            on_removed,
        }
    }

    /// Answers one request. Blocking (database, argon2): call off the async threads.
    pub fn call(&self, req: Request) -> Reply {
        let result = match req {
            Request::UserAdd {
                name,
                password,
                quota,
            } => self.users.add(&name, &password, quota).map(|_| Reply::Done),
            Request::UserList => self.users.list().map(|users| Reply::Users { users }),
            Request::UserPasswd { name, password } => self
                .users
                .set_password(&name, &password)
                .map(|()| Reply::Done),
            Request::UserRemove { name } => self.users.remove(&name).map(|()| {
                if let Some(hook) = &self.on_removed {
                    hook(&name);
                }
                Reply::Done
            }),
            Request::UserQuota { name, quota } => {
                self.users.set_quota(&name, quota).map(|()| Reply::Done)
            }
            Request::Transfers { user } => self.transfers(user.as_deref()),
            Request::Add { user, name, data } => self.add(&user, &name, &data),
            Request::TokenCreate { user, name } => self.users.get(&user).and_then(|u| {
                let (token, info) = crate::tokens::create(self.users.storage().store(), &u, &name)?;
                Ok(Reply::Token { token, info })
            }),
            Request::TokenList { user } => self.users.get(&user).and_then(|u| {
                let tokens = crate::tokens::list(self.users.storage().store(), u.id)?;
                Ok(Reply::Tokens { tokens })
            }),
            Request::TokenRevoke { user, id } => self.users.get(&user).and_then(|u| {
                if crate::tokens::revoke(self.users.storage().store(), u.id, &id)? {
                    Ok(Reply::Done)
                } else {
                    Err(UserError::Invalid(format!("`{user}` has no token {id}")))
                }
            }),
            Request::Backup { dest } => {
                return match crate::backup::backup(self.users.storage(), &self.data, &dest) {
                    Ok(report) => Reply::BackedUp { report },
                    Err(e) => Reply::Error {
                        message: format!("backup: {e}"),
                    },
                };
            }
            Request::Janitor {
                job,
                dry_run,
                grace,
            } => {
                let grace = grace.map(std::time::Duration::from_secs);
                return match self.janitor.run(job, dry_run, grace) {
                    Ok(report) => Reply::Report {
                        actions: report.actions,
                    },
                    Err(e) => Reply::Error {
                        message: e.to_string(),
                    },
                };
            }
        };
        result.unwrap_or_else(|e| Reply::Error {
            message: e.to_string(),
        })
    }
}
