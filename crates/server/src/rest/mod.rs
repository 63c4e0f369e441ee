//! The Kubernetes-shaped REST API on `--listen-api-url`: Kubernetes' paths and JSON shapes
//! over the MVCC store, with the rules of [`stead_api`] applied to every write.
//!
//! ```text
//!  /apis/<group>/<version>/[namespaces/<ns>/]<plural>[/<name>[/status|/scale]]
//!  /api/v1/...  (the core group, "")
//!        │ target::resolve (KindRegistry::lookup_resource)
//!        ▼
//!  handlers: GET / LIST / POST / PUT / PATCH / DELETE ──► lifecycle::prepare_* + validate
//!        │                                                        │
//!  watch: serve_watch on the kind's key prefix                storage: Txn on mod_revision
//!        ▼                                                        ▼
//!  newline-delimited {"type","object"}                 JSON at /registry/<group>/<plural>/...
//! ```
//!
//! - `discovery`: `/api`, `/apis` and the resource lists clients resolve kinds with;
//! - `delete`: DELETE with DeleteOptions (preconditions, propagation);
//! - `target`: URL to kind; `handlers`: dispatch and the write paths; `patch`: PATCH;
//! - `scale`: the `/scale` subresource (autoscaling/v1 Scale);
//! - `openapi`: `/openapi/v3` documents from the kinds' schemas;
//! - `protobuf`: protobuf request bodies of core kinds (client-go's typed clients);
//! - `list`: LIST with selectors and pages; `table`: Table responses (printer columns);
//! - `watch`: `?watch=true` streams; `storage`: reads and guarded writes;
//! - `crds`: the registry kept in step with stored CRDs; `gc`: owner references and
//!   namespace deletion;
//! - `status`: every error as a Kubernetes `Status` body.
//!
//! CustomResourceDefinitions are ordinary objects of a built-in kind; writing one also
//! registers its kind. Stored CRDs are loaded at start-up and followed with a
//! watch, so every member serves the kinds registered through any member.

mod crds;
mod delete;
mod discovery;
mod gc;
mod handlers;
mod list;
mod openapi;
mod patch;
mod protobuf;
mod scale;
mod status;
mod storage;
mod table;
mod target;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use stead_api::KindRegistry;
use stead_store::Store;

/// The largest request body read, as Kubernetes' API server allows (3 MiB); objects must
/// also fit the store's request limit.
pub(crate) const MAX_BODY: usize = 3 << 20;

/// How much of a too-large body is read (and dropped) before answering 413.
pub(crate) const DRAIN_LIMIT: usize = 16 << 20;

/// The group and plural under which CRDs are stored.
const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_PLURAL: &str = "customresourcedefinitions";

/// Shared state of the REST handlers.
#[derive(Clone)]
pub struct RestApi {
    store: Store,
    registry: Arc<RwLock<KindRegistry>>,
    progress_interval: Duration,
    /// Set once the `default` Namespace is known to exist.
    default_namespace: Arc<AtomicBool>,
}

impl RestApi {
    /// The API over `store`, serving the built-in kinds and every CRD stored so far.
    /// `progress_interval` paces watch bookmarks. Run [`RestApi::follow_crds`] beside it so
    /// that CRDs written through other members are served too.
    pub async fn new(store: Store, progress_interval: Duration) -> Result<RestApi, String> {
        let registry = KindRegistry::with_builtins().map_err(|e| format!("built-in kinds: {e}"))?;
        let api = RestApi {
            store,
            registry: Arc::new(RwLock::new(registry)),
            progress_interval,
            default_namespace: Arc::new(AtomicBool::new(false)),
        };
        if let Err(e) = api.load_crds().await {
            tracing::warn!(error = %e.message, "cannot load stored CustomResourceDefinitions");
        }
        Ok(api)
    }

    fn registry(&self) -> std::sync::RwLockReadGuard<'_, KindRegistry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, KindRegistry> {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The REST router: every method on `/apis/...`; anything else is a 404 Status.
pub fn router(api: RestApi) -> Router {
    Router::new()
        .route("/version", axum::routing::get(discovery::version))
        .route("/apis", any(handlers::handle))
        .route("/apis/{*path}", any(handlers::handle))
        .route("/api", any(handlers::handle))
        .route("/api/{*path}", any(handlers::handle))
        .route("/openapi/v3", axum::routing::get(openapi_handler))
        .route("/openapi/v3/{*path}", axum::routing::get(openapi_handler))
        .fallback(target::not_found)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(api)
}

async fn openapi_handler(
    axum::extract::State(api): axum::extract::State<RestApi>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match openapi::serve(&api, uri.path()) {
        Some(Ok(resp)) => resp,
        Some(Err(e)) => e.into_response(),
        None => status::ApiError::path_not_found(uri.path()).into_response(),
    }
}

/// Query parameters, decoded once; the first value of a repeated parameter wins (Go's
/// `url.Values.Get`).
#[derive(Debug, Default)]
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Query(map)
    }

    pub(crate) fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", String::as_str)
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), "true" | "1")
    }
}
