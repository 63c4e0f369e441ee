//! The `ManagedFile` controller: a file kept at the content and mode of its spec.
//!
//! ```text
//!  inotify on each file's directory ─┐
//!  metadata poll every POLL_EVERY  ──┴─ changed ──► reconcile the object
//!  reconcile: read the file ─► missing / other content / other mode? ─► write it back
//!             (temporary file + rename), count the repair, record an Event
//!  delete the object ─► finalizer removes the file
//! ```
//!
//! Notifications make repairs immediate; the poll (size, modification time, permissions,
//! existence) catches a missed notification, and a full content check in every reconcile
//! (and one every RESYNC) catches what metadata does not show.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use serde_json::json;
use stead_api::kinds::ManagedFile;
use stead_api::{DynamicObject, Resource, Timestamp};
use tokio::sync::mpsc;

use super::{DemoError, events};
use crate::client::{ApiResource, Client, Patch, PatchParams};
use crate::finalizer::{Event, finalizer};
use crate::reflector::Store;
use crate::{Action, ObjectRef};

/// The finalizer that removes the file.
pub const FINALIZER: &str = "stead.dev/remove-file";
const CONTROLLER: &str = "managedfile-controller";
/// How often the set of watched files follows the cached objects.
const REFRESH_EVERY: Duration = Duration::from_millis(250);
/// How often every file's metadata is compared, behind the notifications.
const POLL_EVERY: Duration = Duration::from_secs(5);
/// The safety net: every file is checked in full this often.
const RESYNC: Duration = Duration::from_secs(30);

/// Where `ManagedFile` objects live.
pub fn resource() -> ApiResource {
    ApiResource::new(
        ManagedFile::GROUP,
        ManagedFile::VERSION,
        ManagedFile::KIND,
        ManagedFile::PLURAL,
        false,
    )
}

/// What the file reconciler needs.
pub struct Context<C> {
    pub client: C,
}

/// What is wrong with a file, if anything.
fn drift(path: &Path, content: &str, mode: u32) -> Option<&'static str> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Some("missing");
    };
    match std::fs::read(path) {
        Ok(bytes) if bytes == content.as_bytes() => {}
        _ => return Some("content"),
    }
    (meta.permissions().mode() & 0o7777 != mode).then_some("mode")
}

/// Writes the file whole: a temporary file beside it, then a rename.
fn write_file(path: &Path, content: &str, mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.stead-tmp"));
    std::fs::write(&temp, content)?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&temp, path)
}

/// Reconciles one `ManagedFile`.
pub async fn reconcile<C: Client>(
    object: Arc<DynamicObject>,
    ctx: Arc<Context<C>>,
) -> Result<Action, DemoError> {
    finalizer(&ctx.client, &resource(), FINALIZER, object, |event| async {
        match event {
            Event::Apply(file) => apply(&ctx, &file).await,
            Event::Cleanup(file) => {
                let spec: ManagedFile = file.to_resource()?;
                match std::fs::remove_file(&spec.spec.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(DemoError::File {
                            path: spec.spec.path,
                            message: e.to_string(),
                        });
                    }
                }
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(DemoError::from)
}

async fn apply<C: Client>(ctx: &Context<C>, object: &DynamicObject) -> Result<Action, DemoError> {
    let file: ManagedFile = object.to_resource()?;
    let path = Path::new(&file.spec.path);
    let mode = file.spec.mode_bits();
    let previous = file.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    if let Some(what) = drift(path, &file.spec.content, mode) {
        write_file(path, &file.spec.content, mode).map_err(|e| DemoError::File {
            path: file.spec.path.clone(),
            message: e.to_string(),
        })?;
        // The first write of a new (or changed) spec is not a repair; anything else is drift.
        let repair = previous.observed_generation == object.generation() && previous.in_sync;
        if repair {
            status.repairs += 1;
            status.last_repair = Some(Timestamp::from_system_time(SystemTime::now()));
            status.last_drift = what.to_owned();
            events::record(
                &ctx.client,
                CONTROLLER,
                object,
                true,
                "Repaired",
                format!("{} was {}; wrote it back", file.spec.path, describe(what)),
            )
            .await;
        } else {
            events::record(
                &ctx.client,
                CONTROLLER,
                object,
                false,
                "Written",
                format!(
                    "wrote {} ({} bytes, mode {mode:o})",
                    file.spec.path,
                    file.spec.content.len()
                ),
            )
            .await;
        }
    }
    status.in_sync = true;
    status.observed_generation = object.generation();
    if status != previous || file.status.is_none() {
        let patch = Patch::Merge(json!({ "status": status }));
        ctx.client
            .patch(
                &resource(),
                None,
                object.name(),
                &patch,
                &PatchParams::default(),
                true,
            )
            .await?;
    }
    Ok(Action::requeue_after(RESYNC))
}

fn describe(what: &str) -> &'static str {
    match what {
        "missing" => "deleted",
        "mode" => "given other permissions",
        _ => "edited",
    }
}

/// What the safety-net poll compares between looks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fingerprint {
    Missing,
    Present {
        len: u64,
        modified: Option<SystemTime>,
        mode: u32,
    },
}

fn fingerprint(path: &Path) -> Fingerprint {
    match std::fs::metadata(path) {
        Ok(meta) => Fingerprint::Present {
            len: meta.len(),
            modified: meta.modified().ok(),
            mode: meta.permissions().mode(),
        },
        Err(_) => Fingerprint::Missing,
    }
}

/// Watches the files of every cached `ManagedFile` and yields the keys whose file changed:
/// inotify (through `notify`) on each file's directory, and a poll of the files' metadata
/// every POLL_EVERY in case a notification is missed (or the directory cannot be watched).
pub fn watch_files(files: Store) -> mpsc::UnboundedReceiver<ObjectRef> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (changed_tx, mut changed) = mpsc::unbounded_channel::<PathBuf>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = changed_tx.send(path);
            }
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, "no file notifications; ManagedFiles are polled only");
            None
        }
    };
    tokio::spawn(async move {
        let mut by_path: HashMap<PathBuf, ObjectRef> = HashMap::new();
        let mut watched: HashSet<PathBuf> = HashSet::new();
        let mut seen: HashMap<ObjectRef, (PathBuf, Fingerprint)> = HashMap::new();
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        let mut poll = tokio::time::interval(POLL_EVERY);
        loop {
            tokio::select! {
                Some(path) = changed.recv() => {
                    if let Some(key) = by_path.get(&path)
                        && tx.send(key.clone()).is_err()
                    {
                        return;
                    }
                }
                _ = refresh.tick() => {
                    by_path = files
                        .state()
                        .iter()
                        .filter_map(|o| {
                            let path = o.pointer("/spec/path")?.as_str()?;
                            Some((PathBuf::from(path), ObjectRef::from_obj(o)))
                        })
                        .collect();
                    if let Some(watcher) = watcher.as_mut() {
                        for dir in by_path.keys().filter_map(|p| p.parent()) {
                            if !watched.contains(dir)
                                && dir.is_dir()
                                && watcher.watch(dir, RecursiveMode::NonRecursive).is_ok()
                            {
                                watched.insert(dir.to_path_buf());
                            }
                        }
                    }
                }
                _ = poll.tick() => {
                    let mut current = HashMap::new();
                    for (path, key) in &by_path {
                        let print = fingerprint(path);
                        // A key seen for the first time is looked at too: its file may have
                        // changed between the object's reconcile and this first look.
                        let changed = seen
                            .get(key)
                            .is_none_or(|(old_path, old)| old_path != path || *old != print);
                        if changed && tx.send(key.clone()).is_err() {
                            return;
                        }
                        current.insert(key.clone(), (path.clone(), print));
                    }
                    seen = current;
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_missing_content_or_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/f.txt");
        assert_eq!(drift(&path, "hi\n", 0o644), Some("missing"));
        write_file(&path, "hi\n", 0o644).expect("write");
        assert_eq!(drift(&path, "hi\n", 0o644), None);
        assert_eq!(drift(&path, "bye\n", 0o644), Some("content"));
        assert_eq!(drift(&path, "hi\n", 0o600), Some("mode"));
    }
}
