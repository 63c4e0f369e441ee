//! The kind registry kept in step with the CustomResourceDefinitions in the store:
//!
//! ```text
//!  start-up      range over /registry/apiextensions.k8s.io/customresourcedefinitions/
//!                  └─ register_crd for each (at revision R)
//!  follow_crds   watch the same prefix from R+1
//!                  ├─ put    ─► register_crd (a new or changed CRD)
//!                  ├─ delete ─► unregister_crd
//!                  └─ compacted ─► load again, watch from the new revision
//! ```
//!
//! The member that handles a CRD write registers it at once as well (read-your-writes);
//! registering the same CRD twice is harmless.

use std::time::Duration;

use stead_api::{CustomResourceDefinition, storage_prefix};
use stead_store::watch::{WatchOutput, WatchRequest, WatchSpec, serve_watch};
use stead_store::{EventType, RangeRequest};
use tokio::sync::mpsc;

use super::status::ApiError;
use super::storage::{decode_kv, prefix_end};
use super::{CRD_GROUP, CRD_PLURAL, RestApi};

/// Pause before following again after the watch stream stopped.
const RETRY: Duration = Duration::from_secs(1);

fn crd_prefix() -> Vec<u8> {
    storage_prefix(CRD_GROUP, CRD_PLURAL, None).into_bytes()
}

impl RestApi {
    /// Registers the kind of every stored CRD and returns the revision read. The read is
    /// local: at start-up a member may not know a leader yet.
    pub(crate) async fn load_crds(&self) -> Result<i64, ApiError> {
        let prefix = crd_prefix();
        let resp = self
            .store
            .range(RangeRequest {
                range_end: prefix_end(&prefix),
                key: prefix,
                serializable: true,
                ..Default::default()
            })
            .await?;
        for kv in &resp.kvs {
            match decode_kv(kv) {
                Ok(object) => self.register_crd_object(&object.to_value(), object.name()),
                Err(e) => tracing::warn!(error = %e.message, "stored CRD not served"),
            }
        }
        Ok(resp.revision)
    }

    /// Serves the kind of a stored CRD; a CRD that cannot be served is logged.
    pub(crate) fn register_crd_object(&self, value: &serde_json::Value, name: &str) {
        let mut registry = self.registry_mut();
        let registered = CustomResourceDefinition::from_value(value)
            .map_err(|e| e.to_string())
            .and_then(|crd| registry.register_crd(&crd).map_err(|e| e.to_string()));
        if let Err(e) = registered {
            tracing::warn!(crd = name, error = %e, "CRD stored but its kind is not served");
        }
    }

    /// Follows CRD writes and deletions made through any member, until the task is aborted.
    pub async fn follow_crds(self) {
        loop {
            match self.load_crds().await {
                Ok(revision) => self.follow_from(revision + 1).await,
                Err(e) => tracing::warn!(error = %e.message, "cannot load CRDs"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Applies CRD changes from `start_revision` on; returns when the watch ends (e.g. the
    /// revision was compacted), so the caller loads everything again.
    async fn follow_from(&self, start_revision: i64) {
        let prefix = crd_prefix();
        let (requests, request_rx) = mpsc::channel(1);
        let (out_tx, mut out) = mpsc::channel(16);
        let watcher = tokio::spawn(serve_watch(
            self.store.clone(),
            request_rx,
            out_tx,
            self.progress_interval,
        ));
        let spec = WatchSpec {
            range_end: prefix_end(&prefix),
            key: prefix,
            start_revision,
            ..Default::default()
        };
        if requests.send(WatchRequest::Create(spec)).await.is_ok() {
            while let Some(output) = out.recv().await {
                match output {
                    WatchOutput::Events { events, .. } => {
                        for event in events {
                            self.apply_crd_event(&event);
                        }
                    }
                    WatchOutput::Canceled { .. } => break,
                    WatchOutput::Created { .. } | WatchOutput::Progress { .. } => {}
                }
            }
        }
        watcher.abort();
    }

    fn apply_crd_event(&self, event: &stead_store::Event) {
        match event.kind {
            EventType::Put => match decode_kv(&event.kv) {
                Ok(object) => self.register_crd_object(&object.to_value(), object.name()),
                Err(e) => tracing::warn!(error = %e.message, "undecodable CRD"),
            },
            EventType::Delete => {
                // Keys are /registry/<group>/<plural>/<name>; the CRD's name is the last part.
                let key = String::from_utf8_lossy(&event.kv.key);
                if let Some(name) = key.rsplit('/').next() {
                    self.registry_mut().unregister_crd(name);
                }
            }
        }
    }
}
