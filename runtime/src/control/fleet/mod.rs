//! Fleet mode: one rollout for every replica. So far, the artifact half: a
//! plugin version packed as an OCI artifact ([`artifact`]) and pushed to or
//! pulled by digest from an OCI registry ([`registry`]). The desired state in
//! etcd and the replicas that follow it are to come (docs/fleet-design.md).

pub mod artifact;
pub mod registry;
