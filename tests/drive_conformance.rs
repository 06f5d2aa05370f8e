//! The `Drive` conformance suite on the real drive (redb + blob store), one fresh user per
//! case, all in one data dir: so it also checks that users don't see each other's nodes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use torrentdrive::service::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_drive_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Arc::new(Service::open(dir.path()).expect("open"));
    let n = AtomicUsize::new(0);
    torrentdrive_fs::conformance::run(|quota| {
        let service = service.clone();
        let name = format!("user{}", n.fetch_add(1, Ordering::Relaxed));
        async move {
            let rec = service
                .users
                .add(&name, "password123", quota)
                .expect("add user");
            service.users.storage().drive(&rec)
        }
    })
    .await;
}
