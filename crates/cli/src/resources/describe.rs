//! `stead describe KIND NAME`: an object's metadata, spec and status, and the Events about
//! it, in kubectl's layout.

use std::fmt::Write as _;

use clap::Args;
use serde_json::Value;
use stead_api::{DynamicObject, Timestamp};
use stead_controller::client::{Client, ListParams};

use super::ServerArg;
use super::catalog::Catalog;
use super::print::{self, line};

#[derive(Args, Debug)]
pub(crate) struct DescribeArgs {
    /// Kind, plural or short name.
    kind: String,
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    server: ServerArg,
}

pub(crate) async fn run(args: DescribeArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let catalog = Catalog::load(&client).await?;
    let resource = &catalog.resolve(&args.kind)?.resource;
    let namespace = resource.namespaced.then_some(args.namespace.as_str());
    let object = client.get(resource, namespace, &args.name).await?;
    let mut out = describe_object(&object)?;
    let events = match catalog.resolve("events") {
        Ok(entry) => {
            let list = client
                .list(&entry.resource, namespace, &ListParams::default())
                .await?;
            list.items
                .into_iter()
                .filter(|e| {
                    e.pointer("/involvedObject/uid").and_then(Value::as_str) == Some(object.uid())
                })
                .collect()
        }
        Err(_) => Vec::new(),
    };
    out.push_str(&describe_events(
        &events,
        Timestamp::from_system_time(std::time::SystemTime::now()),
    ));
    print!("{out}");
    Ok(())
}

fn map_text(map: &std::collections::BTreeMap<String, String>, indent: usize) -> String {
    if map.is_empty() {
        return "<none>".into();
    }
    let pad = " ".repeat(indent);
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(&format!("\n{pad}"))
}

/// A JSON value as an indented block of YAML.
fn block(value: &Value) -> anyhow::Result<String> {
    let text = print::yaml(value)?;
    let mut out = String::new();
    for l in text.lines() {
        let _ = writeln!(out, "  {l}");
    }
    Ok(out)
}

fn describe_object(object: &DynamicObject) -> anyhow::Result<String> {
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "{:<14}{value}", format!("{name}:"));
    };
    field(&mut out, "Name", object.name());
    if let Some(ns) = object.namespace() {
        field(&mut out, "Namespace", ns);
    }
    field(&mut out, "Labels", &map_text(&object.labels(), 14));
    field(
        &mut out,
        "Annotations",
        &map_text(&object.annotations(), 14),
    );
    field(&mut out, "API Version", object.api_version());
    field(&mut out, "Kind", object.kind());
    let mut metadata = object.metadata_map().cloned().unwrap_or_default();
    for key in [
        "name",
        "namespace",
        "labels",
        "annotations",
        "managedFields",
    ] {
        metadata.remove(key);
    }
    out.push_str("Metadata:\n");
    out.push_str(&block(&Value::Object(metadata))?);
    for (title, key) in [("Spec", "spec"), ("Status", "status")] {
        if let Some(value) = object.get(key) {
            let _ = writeln!(out, "{title}:");
            out.push_str(&block(value)?);
        }
    }
    Ok(out)
}

fn describe_events(events: &[DynamicObject], now: Timestamp) -> String {
    if events.is_empty() {
        return "Events:       <none>\n".into();
    }
    let mut rows: Vec<(Timestamp, Vec<String>)> = events
        .iter()
        .map(|e| {
            let text = |p: &str| {
                e.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let at = [
                text("/lastTimestamp"),
                text("/eventTime"),
                text("/metadata/creationTimestamp"),
            ]
            .iter()
            .find_map(|t| t.parse::<Timestamp>().ok())
            .unwrap_or(now);
            let age = age(now.unix_seconds() - at.unix_seconds());
            let kind = match text("/type") {
                t if t.is_empty() => "Normal".to_owned(),
                t => t,
            };
            (
                at,
                vec![
                    kind,
                    text("/reason"),
                    age,
                    text("/source/component"),
                    text("/message"),
                ],
            )
        })
        .collect();
    rows.sort_by_key(|(at, _)| *at);
    let headers: Vec<String> = ["Type", "Reason", "Age", "From", "Message"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let rules: Vec<String> = headers.iter().map(|h| "-".repeat(h.len())).collect();
    let mut widths: Vec<usize> = headers.iter().map(String::len).collect();
    for (_, row) in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::from("Events:\n");
    for cells in std::iter::once(&headers)
        .chain(std::iter::once(&rules))
        .chain(rows.iter().map(|(_, r)| r))
    {
        out.push_str("  ");
        out.push_str(&line(cells, &widths));
    }
    out
}

/// Ages in describe output, as kubectl prints them ("45s", "3m", "2d").
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=10_799 => format!("{}m", s / 60),
        10_800..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_listed_oldest_first_with_ages() {
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().expect("time");
        let event = |reason: &str, at: &str| {
            DynamicObject::from_value(json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": reason, "creationTimestamp": at},
                "reason": reason, "message": format!("{reason} happened"),
                "source": {"component": "processset-controller"},
            }))
            .expect("object")
        };
        let text = describe_events(
            &[
                event("Restarted", "2026-01-01T00:09:30Z"),
                event("Created", "2026-01-01T00:00:00Z"),
            ],
            now,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Events:");
        assert!(lines[1].trim_start().starts_with("Type"), "{text}");
        assert!(
            lines[3].contains("Created") && lines[3].contains("10m"),
            "{text}"
        );
        assert!(
            lines[4].contains("Restarted") && lines[4].contains("30s"),
            "{text}"
        );
        assert_eq!(describe_events(&[], now), "Events:       <none>\n");
    }
}
