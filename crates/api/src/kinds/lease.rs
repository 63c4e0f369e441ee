//! `Lease` (`stead.dev/v1`, namespaced): a lock with a holder and an expiry, used for leader
//! election by controllers. Same fields as Kubernetes' `coordination.k8s.io/v1` Lease.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{STEAD_GROUP, STEAD_VERSION};
use crate::meta::{ObjectMeta, Timestamp, TypeMeta};
use crate::registry::PrinterColumn;
use crate::resource::{Resource, Scope};

/// A lease.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "A lock with a holder and an expiry, for leader election.")]
pub struct Lease {
    /// `stead.dev/v1`, `Lease`.
    #[serde(flatten)]
    pub types: TypeMeta,
    /// Standard metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Holder and timing.
    #[serde(default)]
    pub spec: LeaseSpec,
}

/// `spec` of a lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseSpec {
    /// Identity of the current holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// How long a holder may go without renewing before others may take the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub lease_duration_seconds: Option<i32>,
    /// When the current holder acquired the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<Timestamp>,
    /// When the current holder last renewed the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<Timestamp>,
    /// How many times the lease changed holders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub lease_transitions: Option<i32>,
}

impl Lease {
    /// A new, unheld lease.
    pub fn new(namespace: &str, name: &str) -> Self {
        Lease {
            types: Self::type_meta(),
            metadata: ObjectMeta::namespaced(namespace, name),
            spec: LeaseSpec::default(),
        }
    }

    /// Whether the lease is unheld or its holder failed to renew in time, at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        let spec = &self.spec;
        match (
            spec.holder_identity.as_deref(),
            spec.renew_time.or(spec.acquire_time),
        ) {
            (None | Some(""), _) | (_, None) => true,
            (Some(_), Some(renewed)) => {
                let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
                renewed.plus_seconds(duration) <= now
            }
        }
    }
}

impl Resource for Lease {
    const GROUP: &'static str = STEAD_GROUP;
    const VERSION: &'static str = STEAD_VERSION;
    const KIND: &'static str = "Lease";
    const PLURAL: &'static str = "leases";
    const SINGULAR: &'static str = "lease";
    const SCOPE: Scope = Scope::Namespaced;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn printer_columns() -> Vec<PrinterColumn> {
        // NAME, HOLDER, AGE: what `kubectl get leases` prints against Kubernetes.
        vec![
            PrinterColumn::new("Holder", "string", ".spec.holderIdentity"),
            PrinterColumn::new("Age", "date", ".metadata.creationTimestamp"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lease_spec_uses_kubernetes_field_names_and_microtime() {
        let mut lease = Lease::new("kube-system", "leader");
        lease.spec = LeaseSpec {
            holder_identity: Some("node-1".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(Timestamp::from_unix(1_700_000_000, 0)),
            renew_time: Some(Timestamp::from_unix(1_700_000_010, 123_456_000)),
            lease_transitions: Some(2),
        };
        assert_eq!(
            serde_json::to_value(&lease).ok(),
            Some(json!({
                "apiVersion": "stead.dev/v1", "kind": "Lease",
                "metadata": {"name": "leader", "namespace": "kube-system"},
                "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 15,
                         "acquireTime": "2023-11-14T22:13:20Z",
                         "renewTime": "2023-11-14T22:13:30.123456Z", "leaseTransitions": 2}
            }))
        );
    }

    #[test]
    fn expiry_depends_on_holder_renewal_and_duration() {
        let t0 = Timestamp::from_unix(1000, 0);
        let mut lease = Lease::new("ns", "l");
        assert!(lease.is_expired(t0), "an unheld lease is free");
        lease.spec.holder_identity = Some("a".into());
        lease.spec.lease_duration_seconds = Some(10);
        lease.spec.renew_time = Some(t0);
        let cases = [(5, false), (9, false), (10, true), (60, true)];
        for (after, expired) in cases {
            assert_eq!(
                lease.is_expired(t0.plus_seconds(after)),
                expired,
                "after {after}s"
            );
        }
    }

    #[test]
    fn the_lease_schema_bounds_durations() {
        let schema = Lease::schema();
        let spec = &schema["properties"]["spec"]["properties"];
        assert_eq!(spec["leaseDurationSeconds"]["minimum"], json!(1));
        assert_eq!(spec["renewTime"]["format"], json!("date-time"));
    }
}
