//! `stead apply -f FILE|DIR|-`: server-side apply of every object of the manifests, reported
//! per object as `created`, `configured` or `unchanged`.
//!
//! Each object is one apply request, so an object is written whole or not at all. A write
//! that changes nothing is not stored, so its resourceVersion stays: that is `unchanged`.

use anyhow::bail;
use clap::Args;
use stead_controller::client::{ApiResource, Client, HttpClient, Patch, PatchParams};

use super::ServerArg;
use super::catalog::Catalog;
use super::manifest::{self, Item};

#[derive(Args, Debug)]
pub(crate) struct ApplyArgs {
    /// Manifest files or directories; `-` reads stdin.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    files: Vec<String>,
    /// Also read subdirectories of a directory.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Namespace of objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// The field manager that owns what is applied.
    #[arg(long, default_value = "stead")]
    field_manager: String,
    /// Take over fields another manager owns instead of failing.
    #[arg(long)]
    force_conflicts: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// What an apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

pub(crate) async fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    apply_manifests(&client, &args).await
}

/// Applies manifests through `client` (also used by `stead demo`).
pub(crate) async fn apply_manifests(client: &HttpClient, args: &ApplyArgs) -> anyhow::Result<()> {
    let client = client.clone();
    let items = manifest::load(&args.files, args.recursive)?;
    if items.is_empty() {
        bail!("no objects passed to apply");
    }
    let mut catalog = Catalog::load(&client).await?;
    let mut failed = 0;
    for item in &items {
        // A kind may have been registered by a CRD earlier in this same run.
        if catalog
            .for_object(item.object.api_version(), item.object.kind())
            .is_err()
        {
            catalog = Catalog::load(&client).await?;
        }
        match apply_one(&client, &catalog, item, args).await {
            Ok((qualified, outcome)) => {
                println!("{qualified}/{} {}", item.object.name(), outcome.as_str());
            }
            Err(e) => {
                eprintln!("error: {}: {e:#}", item.location());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} objects were not applied", items.len());
    }
    Ok(())
}

async fn apply_one(
    client: &HttpClient,
    catalog: &Catalog,
    item: &Item,
    args: &ApplyArgs,
) -> anyhow::Result<(String, Outcome)> {
    let object = &item.object;
    let entry = catalog.for_object(object.api_version(), object.kind())?;
    let resource: &ApiResource = &entry.resource;
    let name = object.name();
    if name.is_empty() {
        bail!("metadata.name is required");
    }
    let mut object = object.clone();
    let namespace = if resource.namespaced {
        let ns = object.namespace().unwrap_or(&args.namespace).to_owned();
        object.set_meta_str("namespace", &ns);
        Some(ns)
    } else {
        None
    };
    let before = match client.get(resource, namespace.as_deref(), name).await {
        Ok(existing) => Some(existing.resource_version().to_owned()),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let params = PatchParams {
        field_manager: Some(args.field_manager.clone()),
        force: args.force_conflicts,
    };
    let patch = Patch::Apply(object.to_value());
    let after = client
        .patch(resource, namespace.as_deref(), name, &patch, &params, false)
        .await?;
    let outcome = match before {
        None => Outcome::Created,
        Some(rv) if rv == after.resource_version() => Outcome::Unchanged,
        Some(_) => Outcome::Configured,
    };
    Ok((entry.qualified(), outcome))
}

impl ApplyArgs {
    /// Apply settings for `files`, as `stead apply -f` defaults them.
    pub(crate) fn for_files(files: Vec<String>, server: ServerArg) -> ApplyArgs {
        ApplyArgs {
            files,
            recursive: false,
            namespace: "default".into(),
            field_manager: "stead".into(),
            force_conflicts: false,
            server,
        }
    }
}
