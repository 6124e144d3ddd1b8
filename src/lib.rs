//! fleetctx: discover every cluster you can reach on GKE, EKS and AKS, keep kubeconfig
//! in sync, and serve kubectl cached credentials in milliseconds.
//!
//! The binary is a thin shell over this library: `commands` parses, the modules
//! below do the work and can be used in-process by Rust programs.
//!
//! - `cloud`: one folder per cloud behind the `Cloud` trait, and the registry;
//! - `sync`: fan-out, naming, merge and report; `discovery`: what a scan answers;
//! - `kubeconfig`: the files, their model, the merge, YAML, the safe write;
//! - `token` and `cache`: the cache protocol and its files; `exec_credential`:
//!   kubectl's contract;
//! - `list`, `settings`, `error`;
//! - `fleet`: the library for services, re-exported here: [`discover`] the
//!   clusters of a set of [`Sources`], and a [`client`] for each [`Cluster`], its
//!   [`TokenSource`] refreshing itself; `status`: what `fleetctx status` reports.

pub mod cache;
pub mod cloud;
pub mod commands;
pub mod discovery;
pub mod error;
pub mod exec_credential;
pub mod fleet;
pub mod kubeconfig;
pub mod list;
pub mod settings;
pub mod status;
pub mod sync;
pub mod token;

pub use fleet::{
    Cluster, Fleet, Outcome, SourceOutcome, Sources, TokenSource, client, discover, managed,
};
