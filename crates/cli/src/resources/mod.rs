//! Resource commands over the REST API: `apply`, `get`, `watch`, `delete`, `describe`.
//!
//! ```text
//!  stead apply -f m.yaml ─► yaml::load_objects ─► Catalog::for_object ─► PATCH (apply)
//!  stead get KIND        ─► Catalog::resolve    ─► GET as=Table        ─► columns
//! ```
//!
//! Every command takes `--server URL` (env `STEAD_SERVER`); kinds are resolved through the
//! server's discovery documents, so CRDs applied a moment ago work at once.

mod apply;
mod catalog;
mod delete;
mod describe;
mod get;
mod manifest;
mod print;

use anyhow::Context;
use clap::Args;
use stead_controller::client::HttpClient;

pub(crate) use apply::ApplyArgs;
pub(crate) use delete::DeleteArgs;
pub(crate) use describe::DescribeArgs;
pub(crate) use get::{GetArgs, WatchArgs};

/// The API server to talk to.
#[derive(Args, Debug, Clone)]
pub(crate) struct ServerArg {
    /// REST API URL of any member.
    #[arg(
        long,
        env = "STEAD_SERVER",
        default_value = "http://127.0.0.1:6443",
        value_name = "URL"
    )]
    server: String,
}

impl ServerArg {
    /// The API server at `url`.
    pub(crate) fn at(url: String) -> ServerArg {
        ServerArg { server: url }
    }
}

impl ServerArg {
    pub(crate) fn client(&self) -> anyhow::Result<HttpClient> {
        HttpClient::new(&self.server).with_context(|| format!("--server {}", self.server))
    }
}

pub(crate) use apply::{apply_manifests, run as apply};
pub(crate) use delete::run as delete;
pub(crate) use describe::run as describe;
pub(crate) use get::{run as get, watch};
