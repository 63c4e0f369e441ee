//! `stead get KIND [NAME]` (Tables, YAML or JSON; `-w` follows changes) and
//! `stead watch KIND [--since REV]` (every change with its revision).

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use stead_controller::client::{
    ACCEPT_JSON, ACCEPT_TABLE, ApiResource, Client, HttpClient, ListParams, Method, WatchEvent,
    WatchParams, query,
};

use super::ServerArg;
use super::catalog::Catalog;
use super::print::{self, Grid, Output};

/// Which objects a `get` or `watch` is about.
#[derive(Args, Debug)]
pub(crate) struct Selection {
    /// Kind, plural or short name (`processsets`, `ps`, `processset.stead.dev`).
    kind: String,
    /// Namespace (default `default`).
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector (`app=web,tier in (a,b)`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    #[command(flatten)]
    server: ServerArg,
}

/// The resolved selection.
struct Target {
    client: HttpClient,
    resource: ApiResource,
    namespace: Option<String>,
}

impl Selection {
    async fn resolve(&self) -> anyhow::Result<Target> {
        let client = self.server.client()?;
        let catalog = Catalog::load(&client).await?;
        let resource = catalog.resolve(&self.kind)?.resource.clone();
        let namespace =
            (resource.namespaced && !self.all_namespaces).then(|| self.namespace.clone());
        Ok(Target {
            client,
            resource,
            namespace,
        })
    }
}

#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    selection: Selection,
    /// One object by name.
    name: Option<String>,
    /// Output format (columns by default).
    #[arg(short = 'o', long, value_enum)]
    output: Option<Output>,
    /// After printing, print every change.
    #[arg(short = 'w', long)]
    watch: bool,
}

/// `?labelSelector=...&fieldSelector=metadata.name=...` for a selection.
fn selectors(selector: Option<&str>, name: Option<&str>) -> (Option<String>, Option<String>) {
    (
        selector.map(str::to_owned),
        name.map(|n| format!("metadata.name={n}")),
    )
}

pub(crate) async fn run(args: GetArgs) -> anyhow::Result<()> {
    let target = args.selection.resolve().await?;
    let (labels, fields) = selectors(args.selection.selector.as_deref(), args.name.as_deref());
    let collection = target.resource.collection_path(target.namespace.as_deref());
    let list_path = format!(
        "{collection}{}",
        query(&[
            ("labelSelector", labels.clone()),
            ("fieldSelector", fields.clone())
        ])
    );
    let resource_version = match args.output {
        Some(Output::Yaml | Output::Json | Output::Name) => {
            print_objects(&target, args.name.as_deref(), &list_path, args.output).await?
        }
        _ => {
            let wide = args.output == Some(Output::Wide);
            print_table(
                &target,
                args.name.as_deref(),
                &list_path,
                wide,
                args.selection.all_namespaces,
            )
            .await?
        }
    };
    if !args.watch {
        return Ok(());
    }
    let watch_path = format!(
        "{collection}{}",
        query(&[
            ("watch", Some("true".into())),
            ("resourceVersion", Some(resource_version)),
            ("labelSelector", labels),
            ("fieldSelector", fields),
        ])
    );
    let accept = if args.output.is_none() || args.output == Some(Output::Wide) {
        ACCEPT_TABLE
    } else {
        ACCEPT_JSON
    };
    let mut events = target.client.watch_path(&watch_path, accept).await?;
    // Columns of later rows are aligned to the widths of what was printed first.
    let mut grid: Option<Grid> = None;
    while let Some(event) = events.next().await {
        let object = match event? {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
            WatchEvent::Bookmark { .. } => continue,
            WatchEvent::Error(status) => bail!("the watch ended: {status}"),
        };
        let value = object.to_value();
        match args.output {
            None | Some(Output::Wide) => {
                let grid = grid.get_or_insert_with(|| {
                    Grid::from_definitions(
                        &value,
                        args.output == Some(Output::Wide),
                        args.selection.all_namespaces,
                    )
                });
                let widths = grid.widths();
                for row in value
                    .get("rows")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    print!("{}", print::line(&grid.row_cells(row), &widths));
                }
            }
            Some(Output::Json) => print!("{}", print::json(&value)),
            Some(Output::Yaml) => print!("---\n{}", print::yaml(&value)?),
            Some(Output::Name) => println!("{}", name_of(&target.resource, &value)),
        }
    }
    Ok(())
}

fn name_of(resource: &ApiResource, object: &Value) -> String {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if resource.group.is_empty() {
        format!("{}/{name}", resource.kind.to_lowercase())
    } else {
        format!("{}.{}/{name}", resource.kind.to_lowercase(), resource.group)
    }
}

/// Prints objects as YAML, JSON or names; answers the revision they were read at.
async fn print_objects(
    target: &Target,
    name: Option<&str>,
    list_path: &str,
    output: Option<Output>,
) -> anyhow::Result<String> {
    let value = match name {
        Some(name) => {
            let object = target
                .client
                .get(&target.resource, target.namespace.as_deref(), name)
                .await?;
            object.into_value()
        }
        None => {
            let mut list = target
                .client
                .request_json(Method::GET, list_path, None)
                .await?;
            if let Value::Object(map) = &mut list {
                map.insert("apiVersion".into(), json!("v1"));
                map.insert("kind".into(), json!("List"));
            }
            list
        }
    };
    let resource_version = value
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match output {
        Some(Output::Json) => print!("{}", print::json(&value)),
        Some(Output::Name) => {
            let items = match value.get("items").and_then(Value::as_array) {
                Some(items) => items.clone(),
                None => vec![value.clone()],
            };
            for item in &items {
                println!("{}", name_of(&target.resource, item));
            }
        }
        _ => print!("{}", print::yaml(&value)?),
    }
    Ok(resource_version)
}

/// Prints a Table; answers the revision it was read at.
async fn print_table(
    target: &Target,
    name: Option<&str>,
    list_path: &str,
    wide: bool,
    all_namespaces: bool,
) -> anyhow::Result<String> {
    let path = match name {
        Some(name) => target
            .resource
            .object_path(target.namespace.as_deref(), name),
        None => list_path.to_owned(),
    };
    let table = target
        .client
        .request_as(Method::GET, &path, ACCEPT_TABLE, None)
        .await?;
    let resource_version = table
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut grid = Grid::from_definitions(&table, wide, all_namespaces);
    grid.add_rows(&table);
    if grid.rows.is_empty() {
        match &target.namespace {
            Some(ns) => eprintln!("No resources found in {ns} namespace."),
            None => eprintln!("No resources found"),
        }
    } else {
        print!("{}", grid.render());
    }
    Ok(resource_version)
}

#[derive(Args, Debug)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    selection: Selection,
    /// Start after this revision (default: from now on).
    #[arg(long, value_name = "REV")]
    since: Option<i64>,
    /// Print whole objects as JSON, one per line.
    #[arg(short = 'o', long, value_parser = ["json"])]
    output: Option<String>,
}

/// `stead watch KIND`: one line per change, `REV TYPE [NAMESPACE/]NAME gen=G`.
pub(crate) async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let target = args.selection.resolve().await?;
    let start = match args.since {
        Some(rev) if rev < 0 => bail!("--since {rev}: a revision is 0 or more"),
        Some(rev) => rev.to_string(),
        None => {
            let params = ListParams {
                limit: Some(1),
                ..ListParams::default()
            };
            target
                .client
                .list(&target.resource, target.namespace.as_deref(), &params)
                .await?
                .resource_version
        }
    };
    let params = WatchParams {
        resource_version: Some(start.clone()),
        label_selector: args.selection.selector.clone(),
        ..WatchParams::default()
    };
    let mut events = target
        .client
        .watch(&target.resource, target.namespace.as_deref(), &params)
        .await
        .with_context(|| format!("watching {} from revision {start}", target.resource.plural))?;
    while let Some(event) = events.next().await {
        let (type_, object) = match event? {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark { .. } => continue,
            WatchEvent::Error(status) if status.code == 410 => {
                bail!("revision {start} has been compacted: {}", status.message)
            }
            WatchEvent::Error(status) => bail!("the watch ended: {status}"),
        };
        if args.output.is_some() {
            println!("{}", serde_json::to_string(object.as_map())?);
            continue;
        }
        let name = match object.namespace() {
            Some(ns) => format!("{ns}/{}", object.name()),
            None => object.name().to_owned(),
        };
        println!(
            "{} {type_} {name} gen={}",
            object.resource_version(),
            object.generation()
        );
    }
    Ok(())
}
