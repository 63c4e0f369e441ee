//! Table responses (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`): the rows
//! `get` prints, with the kind's printer columns computed on the server, as Kubernetes does.
//!
//! ```text
//!  {"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"42"},
//!   "columnDefinitions":[{"name":"Name",...},{"name":"Ready","type":"integer",...},
//!                        {"name":"Age","type":"date",...}],
//!   "rows":[{"cells":["web",3,"5m"],"object":{"kind":"PartialObjectMetadata",...}}]}
//! ```
//!
//! A kind without printer columns gets `Name` and `Age`; one with columns gets `Name` and
//! its columns (a CRD lists `Age` itself when it wants one). Date cells are ages ("5m",
//! "3d4h"), as Kubernetes renders them.

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value, json};
use stead_api::registry::PrinterColumn;
use stead_api::{DynamicObject, Timestamp};

use super::target::Target;

/// Whether the client asked for a Table.
pub(crate) fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=Table")
        })
}

/// The columns of a kind at the target's version.
pub(crate) fn columns(target: &Target) -> Vec<PrinterColumn> {
    let printer = &target.version.printer_columns;
    // A kind that places the name itself (Events show it only with -o wide) gets no
    // leading Name column.
    if printer.iter().any(|c| c.json_path == ".metadata.name") {
        return printer.clone();
    }
    let mut name = PrinterColumn::new("Name", "string", ".metadata.name");
    name.format = "name".into();
    name.description = "Name must be unique within a namespace.".into();
    let mut columns = vec![name];
    if target.version.printer_columns.is_empty() {
        let mut age = PrinterColumn::new("Age", "date", ".metadata.creationTimestamp");
        age.description = "CreationTimestamp is when the object was created.".into();
        columns.push(age);
    } else {
        columns.extend(target.version.printer_columns.iter().cloned());
    }
    columns
}

fn definitions(columns: &[PrinterColumn]) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// One row: the cells and the object's metadata.
fn row(columns: &[PrinterColumn], object: &DynamicObject, now: Timestamp) -> Value {
    let value = object.to_value();
    let cells: Vec<Value> = columns
        .iter()
        .map(|column| cell(column, column.value_of(&value), now))
        .collect();
    let metadata = object
        .metadata_map()
        .cloned()
        .map(Value::Object)
        .unwrap_or_else(|| Value::Object(Map::new()));
    json!({
        "cells": cells,
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
        },
    })
}

fn cell(column: &PrinterColumn, value: Option<&Value>, now: Timestamp) -> Value {
    let Some(value) = value else {
        return Value::Null;
    };
    match (column.type_.as_str(), value) {
        ("date", Value::String(text)) => match text.parse::<Timestamp>() {
            Ok(at) => Value::String(human_duration(now.unix_seconds() - at.unix_seconds())),
            Err(_) => Value::String("<invalid>".into()),
        },
        ("integer" | "number" | "boolean", v) if !v.is_object() && !v.is_array() => v.clone(),
        (_, Value::String(text)) => Value::String(text.clone()),
        (_, Value::Null) => Value::Null,
        (_, other) => Value::String(other.to_string()),
    }
}

/// A Table of objects, with headers unless `headers` is false (watch events after the first).
pub(crate) fn table(
    target: &Target,
    objects: &[DynamicObject],
    resource_version: &str,
    headers: bool,
    now: Timestamp,
) -> Value {
    let columns = columns(target);
    let rows: Vec<Value> = objects.iter().map(|o| row(&columns, o, now)).collect();
    let mut table = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [],
        "rows": rows,
    });
    if headers {
        table["columnDefinitions"] = Value::Array(definitions(&columns));
    }
    table
}

/// A duration as Kubernetes prints ages (`duration.HumanDuration`): "45s", "3m20s", "5h",
/// "3d4h", "2y30d".
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubernetes_ages() {
        let cases = [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (47 * 3600, "47h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (8 * 86400, "8d"),
            (2 * 365 * 86400 + 30 * 86400, "2y30d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(human_duration(seconds), want, "{seconds}s");
        }
    }

    #[test]
    fn tables_are_asked_for_with_an_as_parameter() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .expect("header"),
        );
        assert!(wanted(&headers));
        headers.insert(header::ACCEPT, "application/json".parse().expect("header"));
        assert!(!wanted(&headers));
    }
}
