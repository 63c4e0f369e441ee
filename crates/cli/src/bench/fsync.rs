//! `fsync`: the disk's commit latency under a data directory — 4 KiB appended to a file
//! and `fdatasync`ed, like the `fio --fdatasync=1` check etcd's documentation recommends.
//! A durable write pays about this much; a log that overwrites preallocated blocks in place
//! (as stead's does) can pay less, since its flush carries no file size.

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
    let block = vec![0x5a_u8; 4096];
    // Timed on the writing thread itself: the disk's latency, not a runtime's hand-offs.
    let outcome = args
        .driver()
        .run_blocking(move || {
            (&file).write_all(&block)?;
            file.sync_data()
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
