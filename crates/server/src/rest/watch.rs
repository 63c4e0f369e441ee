//! `?watch=true`: the store's watch on the collection's key prefix, as newline-delimited
//! Kubernetes watch events.
//!
//! ```text
//!  resourceVersion=N   ─► serve_watch(start_revision N+1, prev_kv) ─► {"type":"MODIFIED",...}
//!  no resourceVersion  ─► list ─► ADDED per object, then serve_watch(list revision + 1)
//!  N compacted         ─► one {"type":"ERROR","object":<Status 410 Expired>}, end of stream
//!  progress (bookmarks)─► {"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"R"}}}
//!  timeoutSeconds=T    ─► the response ends after T seconds
//! ```
//!
//! Selectors are applied to both the new and the previous state of each change, as
//! Kubernetes' watch cache does: an object that stops matching is sent as DELETED, one that
//! starts matching as ADDED.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use stead_api::DynamicObject;
use stead_store::watch::{WatchOutput, WatchRequest, WatchSpec, serve_watch};
use stead_store::{Event, EventType, RangeRequest};
use tokio::sync::mpsc;

use super::handlers::now;
use super::list::Filter;
use super::status::ApiError;
use super::storage::{decode, decode_kv, prefix_end};
use super::target::Target;
use super::{Query, RestApi, table};

/// Buffered watch outputs between the store and the HTTP body.
const WATCH_BUFFER: usize = 64;

/// How events of one watch are rendered.
struct Renderer {
    filter: Filter,
    bookmarks: bool,
    kind: String,
    api_version: String,
    /// Objects as one-row Tables (`as=Table`); column headers go with the first only.
    table: Option<TableMode>,
}

struct TableMode {
    target: Target,
    headers_sent: bool,
}

/// One watch event, `type` first as Kubernetes writes it.
#[derive(Serialize)]
struct WatchEvent<'a, T: Serialize> {
    #[serde(rename = "type")]
    type_: &'a str,
    object: &'a T,
}

fn line<T: Serialize>(type_: &str, object: &T) -> String {
    let mut text = serde_json::to_string(&WatchEvent { type_, object }).unwrap_or_default();
    text.push('\n');
    text
}

impl Renderer {
    /// One line for an object event, as JSON or as a one-row Table.
    fn object_line(&mut self, type_: &str, object: DynamicObject) -> String {
        match &mut self.table {
            Some(mode) => {
                let rv = object.resource_version().to_owned();
                let headers = !mode.headers_sent;
                mode.headers_sent = true;
                let table = table::table(&mode.target, &[object], &rv, headers, now());
                line(type_, &table)
            }
            None => line(type_, &object.into_value()),
        }
    }

    /// The lines for one store event (none when neither state matches the selectors).
    fn event(&mut self, event: &Event) -> Option<String> {
        let prev = event
            .prev_kv
            .as_ref()
            .and_then(|kv| decode(&kv.value, event.kv.mod_revision).ok())
            .filter(|o| self.filter.matches(o));
        match event.kind {
            EventType::Delete => prev.map(|o| self.object_line("DELETED", o)),
            EventType::Put => {
                let Ok(object) = decode_kv(&event.kv) else {
                    tracing::warn!(key = %String::from_utf8_lossy(&event.kv.key), "undecodable object in watch");
                    return None;
                };
                let now = self.filter.matches(&object);
                let kind = match (prev.is_some(), now) {
                    (_, true) if event.kv.version == 1 => "ADDED",
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                };
                Some(self.object_line(kind, object))
            }
        }
    }

    /// Lines for one watch output (possibly none).
    fn output(&mut self, output: WatchOutput) -> String {
        match output {
            WatchOutput::Created { .. } => String::new(),
            WatchOutput::Progress { .. } if !self.bookmarks => String::new(),
            WatchOutput::Events { events, .. } => {
                let mut text = String::new();
                for event in &events {
                    if let Some(line) = self.event(event) {
                        text.push_str(&line);
                    }
                }
                text
            }
            WatchOutput::Progress { revision, .. } => line(
                "BOOKMARK",
                &json!({"kind": self.kind, "apiVersion": self.api_version,
                        "metadata": {"resourceVersion": revision.to_string()}}),
            ),
            WatchOutput::Canceled {
                compact_revision,
                reason,
                ..
            } => {
                let err = if compact_revision > 0 {
                    ApiError::expired(format!(
                        "too old resource version (compacted at {compact_revision})"
                    ))
                } else {
                    ApiError::internal(format!("watch canceled: {reason}"))
                };
                line("ERROR", &err.to_status())
            }
        }
    }
}

/// `GET` on a collection with `watch=true`.
pub(crate) async fn watch(
    api: &RestApi,
    target: &Target,
    query: &Query,
    as_table: bool,
) -> Result<Response, ApiError> {
    let mut renderer = Renderer {
        filter: Filter::parse(query, &target.kind.selectable_fields)?,
        bookmarks: query.flag("allowWatchBookmarks"),
        kind: target.kind.names.kind.clone(),
        api_version: target.api_version(),
        table: as_table.then(|| TableMode {
            target: target.clone(),
            headers_sent: false,
        }),
    };
    let prefix = target.prefix().into_bytes();
    let mut initial = String::new();
    let start_revision = match query.get("resourceVersion") {
        "" | "0" => {
            let resp = api
                .store
                .range(RangeRequest {
                    key: prefix.clone(),
                    range_end: prefix_end(&prefix),
                    ..Default::default()
                })
                .await?;
            for kv in &resp.kvs {
                let object = decode_kv(kv)?;
                if renderer.filter.matches(&object) {
                    initial.push_str(&renderer.object_line("ADDED", object));
                }
            }
            resp.revision + 1
        }
        text => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .and_then(|n| n.checked_add(1))
            .ok_or_else(|| {
                ApiError::bad_request(format!("resourceVersion {text:?} is not a revision"))
            })?,
    };
    let (requests, request_rx) = mpsc::channel(1);
    let (out_tx, out) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(serve_watch(
        api.store.clone(),
        request_rx,
        out_tx,
        api.progress_interval,
    ));
    let spec = WatchSpec {
        range_end: prefix_end(&prefix),
        key: prefix,
        start_revision,
        progress_notify: renderer.bookmarks,
        prev_kv: true,
        ..Default::default()
    };
    if requests.send(WatchRequest::Create(spec)).await.is_err() {
        return Err(ApiError::internal("the watch stream stopped"));
    }
    let deadline = match query.get("timeoutSeconds") {
        "" => None,
        text => {
            let seconds = text.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("timeoutSeconds {text:?} is not a count"))
            })?;
            // A deadline beyond what the clock can represent is no deadline.
            tokio::time::Instant::now().checked_add(Duration::from_secs(seconds))
        }
    };
    let state = Stream {
        out,
        deadline,
        _requests: requests,
        renderer,
        pending: (!initial.is_empty()).then_some(initial),
        done: false,
    };
    let body = futures::stream::unfold(state, Stream::next);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// The body of one watch response.
struct Stream {
    out: mpsc::Receiver<WatchOutput>,
    /// Kept so that the store's watch stream stays open as long as the response.
    _requests: mpsc::Sender<WatchRequest>,
    renderer: Renderer,
    pending: Option<String>,
    done: bool,
    /// `timeoutSeconds`: the stream ends cleanly then (clients watch again from the last
    /// resourceVersion they saw).
    deadline: Option<tokio::time::Instant>,
}

impl Stream {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Stream)> {
        if let Some(text) = self.pending.take() {
            return Some((Ok(Bytes::from(text)), self));
        }
        // Outputs that render to nothing are skipped: an empty chunk would end the body.
        while !self.done {
            let output = match self.deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, self.out.recv())
                    .await
                    .ok()??,
                None => self.out.recv().await?,
            };
            self.done = matches!(output, WatchOutput::Canceled { .. });
            let text = self.renderer.output(output);
            if !text.is_empty() {
                return Some((Ok(Bytes::from(text)), self));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use stead_store::KeyValue;

    fn renderer(selector: &str) -> Renderer {
        let query = Query::parse(Some(&format!("labelSelector={selector}")));
        Renderer {
            filter: Filter::parse(&query, &[]).unwrap_or_else(|e| panic!("{}", e.message)),
            bookmarks: true,
            kind: "Widget".into(),
            api_version: "x.io/v1".into(),
            table: None,
        }
    }

    fn kv(app: &str, version: i64, mod_revision: i64) -> KeyValue {
        KeyValue {
            key: b"/registry/x.io/widgets/a".to_vec(),
            value: json!({"metadata": {"name": "a", "labels": {"app": app}}})
                .to_string()
                .into_bytes(),
            create_revision: 2,
            mod_revision,
            version,
            lease: 0,
        }
    }

    fn event_type(text: &str) -> String {
        let value: Value = serde_json::from_str(text.trim()).unwrap_or_default();
        value["type"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn selectors_turn_objects_leaving_the_selection_into_deleted_events() {
        let mut r = renderer("app%3Dweb");
        let put = |new: KeyValue, prev: Option<KeyValue>| Event {
            kind: EventType::Put,
            kv: new,
            prev_kv: prev,
        };
        let mut types = |e: &Event| r.event(e).map(|t| event_type(&t));
        assert_eq!(types(&put(kv("web", 1, 2), None)).as_deref(), Some("ADDED"));
        let modified = put(kv("web", 2, 3), Some(kv("web", 1, 2)));
        assert_eq!(types(&modified).as_deref(), Some("MODIFIED"));
        let left = put(kv("db", 3, 4), Some(kv("web", 2, 3)));
        assert_eq!(types(&left).as_deref(), Some("DELETED"));
        let joined = put(kv("web", 4, 5), Some(kv("db", 3, 4)));
        assert_eq!(types(&joined).as_deref(), Some("ADDED"));
        assert_eq!(types(&put(kv("db", 5, 6), Some(kv("db", 4, 5)))), None);
    }

    #[test]
    fn deleted_events_carry_the_last_state_at_the_deletion_revision() {
        let mut r = renderer("");
        let event = Event {
            kind: EventType::Delete,
            kv: KeyValue {
                key: b"/registry/x.io/widgets/a".to_vec(),
                mod_revision: 9,
                ..Default::default()
            },
            prev_kv: Some(kv("web", 2, 7)),
        };
        let text = r.event(&event).unwrap_or_default();
        let value: Value = serde_json::from_str(text.trim()).unwrap_or_default();
        assert_eq!(value["type"], "DELETED");
        assert_eq!(value["object"]["metadata"]["resourceVersion"], "9");
        assert_eq!(value["object"]["metadata"]["labels"]["app"], "web");
    }

    #[test]
    fn progress_is_a_bookmark_only_when_bookmarks_were_asked_for() {
        let mut r = renderer("");
        let progress = || WatchOutput::Progress {
            watch_id: 0,
            revision: 12,
        };
        let value: Value = serde_json::from_str(r.output(progress()).trim()).unwrap_or_default();
        assert_eq!(value["type"], "BOOKMARK");
        assert_eq!(value["object"]["kind"], "Widget");
        assert_eq!(value["object"]["metadata"]["resourceVersion"], "12");
        r.bookmarks = false;
        assert_eq!(r.output(progress()), "");
    }

    #[test]
    fn a_compacted_start_is_one_410_expired_error_event() {
        let mut r = renderer("");
        let text = r.output(WatchOutput::Canceled {
            watch_id: 0,
            revision: 10,
            compact_revision: 8,
            reason: String::new(),
        });
        let value: Value = serde_json::from_str(text.trim()).unwrap_or_default();
        assert_eq!(value["type"], "ERROR");
        assert_eq!(value["object"]["code"], 410);
        assert_eq!(value["object"]["reason"], "Expired");
    }
}
