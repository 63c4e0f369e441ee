//! `ProcessSet` and `Process` (`stead.dev/v1`, namespaced): local processes run from desired
//! state, the demo of drift and repair.
//!
//! A `ProcessSet` asks for `replicas` copies of one command; its controller keeps one child
//! `Process` object per replica (`<set>-0`, `<set>-1`, ...), owned by the set. The process
//! controller runs each `Process` on the machine and writes its pid to the status; a killed
//! process is started again (with growing back-off when it keeps failing), and deleting a
//! `Process` stops it (a finalizer).
//!
//! ```yaml
//! apiVersion: stead.dev/v1
//! kind: ProcessSet
//! metadata: {name: sleepers}
//! spec: {command: sleep, args: ["3600"], replicas: 3}
//! ```

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{STEAD_GROUP, STEAD_VERSION};
use crate::meta::{ObjectMeta, Timestamp, TypeMeta};
use crate::registry::{PrinterColumn, ScaleSubresource};
use crate::resource::{Resource, Scope};

/// When a process that ended is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicy {
    /// Always (the default): a process is meant to run forever.
    #[default]
    Always,
    /// Only after a non-zero exit.
    OnFailure,
    /// Never: an ended process stays ended.
    Never,
}

/// What to run: the part of a `ProcessSet` copied into each `Process`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessTemplate {
    /// The program (looked up on PATH).
    pub command: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// When an ended process is started again.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
}

/// Desired state of a `ProcessSet`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessSetSpec {
    #[serde(flatten)]
    pub template: ProcessTemplate,
    /// How many copies run.
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
}

/// A condition, as Kubernetes reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Timestamp>,
}

/// Observed state of a `ProcessSet`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessSetStatus {
    /// The generation this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// Child `Process` objects.
    #[serde(default)]
    pub replicas: i32,
    /// Children whose process is running.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Restarts of all children together.
    #[serde(default)]
    pub restarts: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Replicas of one command, kept running.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "Replicas of one local command, kept running by a controller.")]
pub struct ProcessSet {
    #[serde(flatten)]
    pub types: TypeMeta,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: ProcessSetSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProcessSetStatus>,
}

impl Resource for ProcessSet {
    const GROUP: &'static str = STEAD_GROUP;
    const VERSION: &'static str = STEAD_VERSION;
    const KIND: &'static str = "ProcessSet";
    const PLURAL: &'static str = "processsets";
    const SINGULAR: &'static str = "processset";
    const SHORT_NAMES: &'static [&'static str] = &["pset"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const SCOPE: Scope = Scope::Namespaced;
    const STATUS_SUBRESOURCE: bool = true;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn printer_columns() -> Vec<PrinterColumn> {
        let mut command = PrinterColumn::new("Command", "string", ".spec.command");
        command.priority = 1;
        vec![
            PrinterColumn::new("Desired", "integer", ".spec.replicas"),
            PrinterColumn::new("Ready", "integer", ".status.readyReplicas"),
            PrinterColumn::new("Restarts", "integer", ".status.restarts"),
            command,
            PrinterColumn::new("Age", "date", ".metadata.creationTimestamp"),
        ]
    }

    fn scale_subresource() -> Option<ScaleSubresource> {
        Some(ScaleSubresource {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: None,
        })
    }
}

/// Where a `Process` is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProcessPhase {
    /// Not started yet.
    #[default]
    Pending,
    Running,
    /// Ended with exit code 0 and will not be started again.
    Succeeded,
    /// Ended with a failure and will not be started again.
    Failed,
    /// Ended, waiting out the back-off before it starts again.
    BackOff,
}

/// Observed state of a `Process`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStatus {
    #[serde(default)]
    pub phase: ProcessPhase,
    /// The operating system's process id while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The kernel's start time of that pid (clock ticks since boot), so that a reused pid is
    /// never taken for this process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// Times the process was started again after it ended.
    #[serde(default)]
    pub restarts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i32>,
    /// While in back-off: when the next start is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One local process, run by the process controller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "One local process, kept in the state its spec asks for.")]
pub struct Process {
    #[serde(flatten)]
    pub types: TypeMeta,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: ProcessTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProcessStatus>,
}

impl Resource for Process {
    const GROUP: &'static str = STEAD_GROUP;
    const VERSION: &'static str = STEAD_VERSION;
    const KIND: &'static str = "Process";
    const PLURAL: &'static str = "processes";
    const SINGULAR: &'static str = "process";
    const SHORT_NAMES: &'static [&'static str] = &["proc"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const SCOPE: Scope = Scope::Namespaced;
    const STATUS_SUBRESOURCE: bool = true;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn printer_columns() -> Vec<PrinterColumn> {
        let mut command = PrinterColumn::new("Command", "string", ".spec.command");
        command.priority = 1;
        vec![
            PrinterColumn::new("Phase", "string", ".status.phase"),
            PrinterColumn::new("Pid", "integer", ".status.pid"),
            PrinterColumn::new("Restarts", "integer", ".status.restarts"),
            command,
            PrinterColumn::new("Age", "date", ".metadata.creationTimestamp"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_process_set_reads_from_the_yaml_users_write() {
        let set: ProcessSet = serde_json::from_value(json!({
            "apiVersion": "stead.dev/v1", "kind": "ProcessSet",
            "metadata": {"name": "sleepers"},
            "spec": {"command": "sleep", "args": ["60"], "replicas": 3,
                     "env": {"A": "1"}, "restartPolicy": "OnFailure"}
        }))
        .expect("process set");
        assert_eq!(set.spec.replicas, 3);
        assert_eq!(set.spec.template.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(
            set.spec.template.env.get("A").map(String::as_str),
            Some("1")
        );
        let back = serde_json::to_value(&set).expect("json");
        assert_eq!(back["spec"]["args"], json!(["60"]));
    }
}
