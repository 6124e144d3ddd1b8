//! fleetctx: discover every GKE and EKS cluster you can reach, keep kubeconfig in
//! sync, and serve kubectl cached credentials in milliseconds.
//!
//! The binary is a thin shell over this library: `cli` parses, the modules below
//! do the work and can be used in-process by Rust programs.

pub mod cache;
pub mod cli;
pub mod discovery;
pub mod eks;
pub mod error;
pub mod exec_credential;
pub mod gke;
pub mod kubeconfig;
pub mod list;
pub mod settings;
pub mod sync;
pub mod token;
