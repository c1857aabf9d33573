//! The libvirt fabric: real virtual machines (KVM in production, QEMU/TCG in tests)
//! protected, replicated and failed over between two libvirt sites, under the same
//! rules as the simulation.
//!
//! Layout: `tools` (the virsh and qemu-img processes), `domain` (definitions read and
//! the replica's made), `hypervisor` (one site's operations), `chain` (recovery points
//! as qcow2 image chains at the target).

pub mod chain;
pub mod domain;
pub mod hypervisor;
pub mod tools;
