//! `stead`: one binary that serves the store and talks to it.
//!
//! - `stead serve`: run a member (etcd's flag names).
//! - `stead kv ...`: a small etcdctl-like client.
//! - `stead apply|get|watch|delete|describe`: resources over the REST API.
//! - `stead kubeconfig`: a kubeconfig for kubectl and other Kubernetes clients.

mod bench;
mod controllers;
mod demo;
mod kubeconfig;
mod kv;
mod resources;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "stead",
    version,
    about = "An etcd-compatible key-value store and control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a stead member (flags mirror etcd's).
    Serve(Box<serve::ServeArgs>),
    /// Read and write keys (a small etcdctl).
    Kv(kv::KvArgs),
    /// Load-test an etcd v3 endpoint (stead or etcd).
    Bench(bench::BenchArgs),
    /// Create or update resources from YAML manifests (server-side apply).
    Apply(resources::ApplyArgs),
    /// List resources, or show one.
    Get(resources::GetArgs),
    /// Print every change to resources of a kind, with its revision.
    Watch(resources::WatchArgs),
    /// Delete resources by name or by manifest.
    Delete(resources::DeleteArgs),
    /// Show one resource in detail, with its events.
    Describe(resources::DescribeArgs),
    /// Run the demo controllers (ProcessSet, Process, ManagedFile) against an API server.
    Controller(controllers::ControllerArgs),
    /// Start a single node with the demo controllers, apply examples/demo and show every
    /// drift and its repair live, until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Print or write a kubeconfig for kubectl and other Kubernetes clients.
    Kubeconfig(kubeconfig::KubeconfigArgs),
}

/// mimalloc: the store's write and read paths allocate many small, short-lived buffers
/// across threads, where it spends markedly less time than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for the whole process, before it allocates much. The allocator
/// asks the kernel for huge pages on its arenas; the kernel then backs each touched 2 MiB
/// region whole and zeroes it on first touch. Measured on three members under 256 writing
/// clients: RSS at rest 75 → 48 MB, after 60,000 puts 157 → 111 MB, and an eighth of the
/// servers' CPU samples were the kernel zeroing those pages (BENCHMARKS.md). Failure
/// changes nothing else.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("stead: cannot turn transparent huge pages off ({e}); continuing with them");
    }
}

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STEAD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Bench(args) = &cli.command {
        runtime.worker_threads(args.threads());
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stead: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Kv(args) => kv::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Apply(args) => resources::apply(args).await,
            Command::Get(args) => resources::get(args).await,
            Command::Watch(args) => resources::watch(args).await,
            Command::Delete(args) => resources::delete(args).await,
            Command::Describe(args) => resources::describe(args).await,
            Command::Controller(args) => controllers::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Kubeconfig(args) => kubeconfig::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
