#[tokio::test]
async fn memory_drive_conforms() {
    torrentdrive_fs::conformance::run(
        |quota| async move { torrentdrive_fs::MemoryDrive::new(quota) },
    )
    .await;
}
