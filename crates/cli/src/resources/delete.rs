//! `stead delete KIND NAME...` or `stead delete -f FILE`: deletes, and by default waits until
//! objects held by finalizers are really gone.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use stead_controller::client::{ApiResource, Client, Deleted, HttpClient};

use super::ServerArg;
use super::catalog::Catalog;
use super::manifest;

#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    /// Kind and names (`processset web api`), unless `-f` is given.
    args: Vec<String>,
    /// Delete the objects of these manifests.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    files: Vec<String>,
    /// Also read subdirectories of a directory.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Namespace of objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Wait until each object is gone (finalizers done).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    wait: bool,
    /// Longest wait per object, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Not finding an object is not an error.
    #[arg(long)]
    ignore_not_found: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// One object to delete.
struct Doomed {
    qualified: String,
    resource: ApiResource,
    namespace: Option<String>,
    name: String,
}

pub(crate) async fn run(args: DeleteArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let catalog = Catalog::load(&client).await?;
    let mut doomed = Vec::new();
    if !args.files.is_empty() {
        if !args.args.is_empty() {
            bail!("give either -f FILE or KIND NAME..., not both");
        }
        // Reverse order: objects before the CRDs and namespaces listed ahead of them.
        for item in manifest::load(&args.files, args.recursive)?
            .into_iter()
            .rev()
        {
            let entry = catalog.for_object(item.object.api_version(), item.object.kind())?;
            let namespace = entry.resource.namespaced.then(|| {
                item.object
                    .namespace()
                    .unwrap_or(&args.namespace)
                    .to_owned()
            });
            doomed.push(Doomed {
                qualified: entry.qualified(),
                resource: entry.resource.clone(),
                namespace,
                name: item.object.name().to_owned(),
            });
        }
    } else {
        let Some((kind, names)) = args.args.split_first() else {
            bail!("give KIND NAME... or -f FILE");
        };
        if names.is_empty() {
            bail!("name which {kind} to delete");
        }
        let entry = catalog.resolve(kind)?;
        for name in names {
            doomed.push(Doomed {
                qualified: entry.qualified(),
                resource: entry.resource.clone(),
                namespace: entry.resource.namespaced.then(|| args.namespace.clone()),
                name: name.clone(),
            });
        }
    }
    let mut failed = 0;
    for object in &doomed {
        if let Err(e) = delete_one(&client, object, &args).await {
            eprintln!("error: {}/{}: {e:#}", object.qualified, object.name);
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} objects were not deleted", doomed.len());
    }
    Ok(())
}

async fn delete_one(client: &HttpClient, object: &Doomed, args: &DeleteArgs) -> anyhow::Result<()> {
    let ns = object.namespace.as_deref();
    match client.delete(&object.resource, ns, &object.name).await {
        Ok(Deleted::Gone(_)) => {}
        Ok(Deleted::Pending(_)) if args.wait => {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
            loop {
                match client.get(&object.resource, ns, &object.name).await {
                    Err(e) if e.is_not_found() => break,
                    Err(e) => return Err(e.into()),
                    Ok(live) if tokio::time::Instant::now() >= deadline => {
                        bail!(
                            "still waiting for finalizers {:?} after {} s",
                            live.finalizers(),
                            args.timeout
                        )
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        Ok(Deleted::Pending(_)) => {}
        Err(e) if e.is_not_found() && args.ignore_not_found => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    println!("{} {:?} deleted", object.qualified, object.name);
    Ok(())
}
