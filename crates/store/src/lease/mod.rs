//! Lease expiry bookkeeping. Leases themselves (id, granted TTL, attached keys) live in the
//! store and change only through commands; *when* a lease expires is decided here, from the
//! clock, and carried out by proposing a `LeaseRevoke` command.

mod lessor;

pub use lessor::{Lessor, MIN_LEASE_TTL};
