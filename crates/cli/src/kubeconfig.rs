//! `stead kubeconfig`: a kubeconfig that points stock `kubectl` (or any client-go or Python
//! client) at a stead REST API.
//!
//! ```text
//!  stead kubeconfig --server http://127.0.0.1:6443 -o ~/.kube/stead
//!  KUBECONFIG=~/.kube/stead kubectl get crd
//! ```
//!
//! The file names one cluster (the server URL; `insecure-skip-tls-verify` for https, since
//! stead's certificates are usually self-made), one user without credentials (stead does not
//! authenticate) and one context, which is the current one.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// The name of the cluster, user and context in the kubeconfig.
const NAME: &str = "stead";

/// Arguments of `stead kubeconfig`.
#[derive(Args, Debug)]
pub(crate) struct KubeconfigArgs {
    /// REST API URL of any member.
    #[arg(
        long,
        env = "STEAD_SERVER",
        default_value = "http://127.0.0.1:6443",
        value_name = "URL"
    )]
    server: String,
    /// Write the kubeconfig to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

/// The kubeconfig text for a server URL.
pub(crate) fn render(server: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(server).with_context(|| format!("--server {server:?}"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "--server {server:?}: the scheme must be http or https"
    );
    let server = server.trim_end_matches('/');
    let insecure = if url.scheme() == "https" {
        "\n    insecure-skip-tls-verify: true"
    } else {
        ""
    };
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {NAME}
  cluster:
    server: {server}{insecure}
users:
- name: {NAME}
  user: {{}}
contexts:
- name: {NAME}
  context:
    cluster: {NAME}
    user: {NAME}
    namespace: default
current-context: {NAME}
preferences: {{}}
"
    ))
}

/// Prints or writes the kubeconfig.
pub(crate) async fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    let text = render(&args.server)?;
    match args.output {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("writing the kubeconfig to {}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_names_the_server_and_makes_its_context_current() {
        let text = render("http://127.0.0.1:6443/").unwrap_or_default();
        assert!(
            text.contains("    server: http://127.0.0.1:6443\n"),
            "{text}"
        );
        assert!(text.contains("current-context: stead\n"), "{text}");
        assert!(!text.contains("insecure-skip-tls-verify"), "{text}");
        let tls = render("https://10.0.0.1:6443").unwrap_or_default();
        assert!(tls.contains("insecure-skip-tls-verify: true"), "{tls}");
        assert!(render("unix:///x").is_err());
        assert!(render("not a url").is_err());
    }
}
