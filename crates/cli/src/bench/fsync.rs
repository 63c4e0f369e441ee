//! `fsync`: the disk's commit latency under a data directory — 4 KiB written and
//! `fdatasync`ed, as a store commits — the floor for a single client's durable write.

use std::io::Write;

use anyhow::Context;
use serde_json::json;

use super::{BenchArgs, Report};

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let path = args
        .data_dir
        .join(format!(".stead-fsync-probe-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut driver = args.driver();
    // One file, one writer: the disk's latency, not its queue depth.
    driver.clients = 1;
    let block = std::sync::Arc::new(vec![0x5a_u8; 4096]);
    let file = std::sync::Arc::new(file);
    let outcome = driver
        .run(vec![file], move |file: std::sync::Arc<std::fs::File>, _| {
            let block = block.clone();
            async move {
                let writer = file.clone();
                let result = tokio::task::spawn_blocking(move || {
                    (&*writer).write_all(&block)?;
                    writer.sync_data()
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
                (file, result)
            }
        })
        .await;
    let _ = std::fs::remove_file(&path);
    Ok(Report {
        workload: args.workload,
        clients: 1,
        outcome,
        extra: vec![("dir", json!(args.data_dir.display().to_string()))],
    })
}
