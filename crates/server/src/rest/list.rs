//! LIST: a range over the collection's key prefix, filtered by label and field selectors,
//! paged with `limit` and `continue`.
//!
//! A `continue` token pins the revision of the first page, so every page reads the same
//! snapshot (a Range with `revision`); once compaction removed that revision the next page
//! is 410 Expired, as in Kubernetes.
//!
//! ```text
//!  continue = base64url({"rv": 42, "start": "/registry/g/widgets/ns/b\u0000"})
//! ```

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use stead_api::DynamicObject;
use stead_api::selector::{FieldSelector, Selector};
use stead_store::RangeRequest;

use super::handlers::{self, json_response};
use super::status::ApiError;
use super::storage::{decode_kv, prefix_end};
use super::target::Target;
use super::{Query, RestApi, table};

/// The `labelSelector` and `fieldSelector` of a LIST or watch.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    labels: Selector,
    fields: FieldSelector,
}

impl Filter {
    /// The selectors of a request; `selectable` are the kind's extra selectable fields.
    pub(crate) fn parse(query: &Query, selectable: &[String]) -> Result<Filter, ApiError> {
        let labels = Selector::parse(query.get("labelSelector"))
            .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {e}")))?;
        let fields = FieldSelector::parse_for(query.get("fieldSelector"), selectable)
            .map_err(|e| ApiError::bad_request(format!("unable to parse fieldSelector: {e}")))?;
        Ok(Filter { labels, fields })
    }

    pub(crate) fn matches(&self, object: &DynamicObject) -> bool {
        self.fields.matches_object(object) && self.labels.matches(&object.labels())
    }
}

/// Where the next page starts, and at which revision.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Continue {
    rv: i64,
    start: String,
}

impl Continue {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Result<Continue, ApiError> {
        let bad = || ApiError::bad_request("continue key is not valid");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let token: Continue = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if token.rv <= 0 {
            return Err(bad());
        }
        Ok(token)
    }
}

/// The revision a LIST reads at: the latest, unless `resourceVersionMatch=Exact` pins one
/// (`resourceVersion` alone means "not older than", which the latest always is).
fn exact_revision(query: &Query) -> Result<i64, ApiError> {
    let text = query.get("resourceVersion");
    let revision = match text {
        "" => 0,
        text => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::bad_request(format!("resourceVersion {text:?} is not a revision"))
            })?,
    };
    match query.get("resourceVersionMatch") {
        "" | "NotOlderThan" => Ok(0),
        "Exact" if revision > 0 => Ok(revision),
        "Exact" => Err(ApiError::bad_request(
            "resourceVersionMatch=Exact needs a resourceVersion greater than 0",
        )),
        other => Err(ApiError::bad_request(format!(
            "resourceVersionMatch {other:?} is not one of Exact, NotOlderThan"
        ))),
    }
}

/// `GET` on a collection.
pub(crate) async fn list(
    api: &RestApi,
    target: &Target,
    query: &Query,
    as_table: bool,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(query, &target.kind.selectable_fields)?;
    let limit = match query.get("limit") {
        "" => 0,
        text => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::bad_request(format!("limit {text:?} is not a count")))?,
    };
    let prefix = target.prefix().into_bytes();
    let (start, revision) = match query.get("continue") {
        "" => (prefix.clone(), exact_revision(query)?),
        token => {
            let token = Continue::decode(token)?;
            if !token.start.as_bytes().starts_with(&prefix) {
                return Err(ApiError::bad_request("continue key is not valid"));
            }
            (token.start.into_bytes(), token.rv)
        }
    };
    let resp = api
        .store
        .range(RangeRequest {
            key: start,
            range_end: prefix_end(&prefix),
            limit,
            revision,
            ..Default::default()
        })
        .await?;
    let list_revision = if revision > 0 {
        revision
    } else {
        resp.revision
    };
    let mut objects = Vec::new();
    for kv in &resp.kvs {
        let object = decode_kv(kv)?;
        if filter.matches(&object) {
            objects.push(object);
        }
    }
    let mut metadata = Map::new();
    metadata.insert(
        "resourceVersion".into(),
        Value::from(list_revision.to_string()),
    );
    if let (true, Some(last)) = (resp.more, resp.kvs.last()) {
        let mut next = last.key.clone();
        next.push(0);
        let token = Continue {
            rv: list_revision,
            start: String::from_utf8_lossy(&next).into_owned(),
        };
        metadata.insert("continue".into(), Value::from(token.encode()));
        let remaining = resp.count - resp.kvs.len() as i64;
        if remaining > 0 && filter.labels.is_empty() && filter.fields.is_empty() {
            metadata.insert("remainingItemCount".into(), Value::from(remaining));
        }
    }
    if as_table {
        let mut body = table::table(
            target,
            &objects,
            &list_revision.to_string(),
            true,
            handlers::now(),
        );
        body["metadata"] = Value::Object(metadata);
        return Ok(json_response(StatusCode::OK, &body));
    }
    let items: Vec<Value> = objects.into_iter().map(DynamicObject::into_value).collect();
    let body = json!({
        "kind": target.kind.names.list_kind,
        "apiVersion": target.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = Continue {
            rv: 42,
            start: "/registry/g/w/ns/b\0".into(),
        };
        assert_eq!(Continue::decode(&token.encode()).ok(), Some(token));
        assert!(Continue::decode("not-a-token").is_err());
        let zero = Continue {
            rv: 0,
            start: String::new(),
        };
        assert!(Continue::decode(&zero.encode()).is_err());
    }

    #[test]
    fn filters_combine_label_and_field_selectors() {
        let query = Query::parse(Some(
            "labelSelector=app%3Dweb&fieldSelector=metadata.name%3Da",
        ));
        let filter = Filter::parse(&query, &[]).expect("valid selectors");
        let object = |name: &str, app: &str| {
            DynamicObject::from_value(json!({"metadata": {"name": name, "labels": {"app": app}}}))
                .unwrap_or_default()
        };
        assert!(filter.matches(&object("a", "web")));
        assert!(!filter.matches(&object("b", "web")));
        assert!(!filter.matches(&object("a", "db")));
        assert!(Filter::parse(&Query::parse(Some("fieldSelector=spec.x%3D1")), &[]).is_err());
    }
}
