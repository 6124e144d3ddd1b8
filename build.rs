//! Links the fleetctx binary as a position-dependent executable on Linux.
//!
//! kubectl runs `fleetctx token` on every call, and a cache hit should cost what
//! starting a process and reading one small file costs. In a position-independent
//! executable the loader first applies some 45,000 relative relocations, writing
//! to ~180 pages of RELRO, which is more than a hit's own work. Linked at a fixed
//! address, the linker resolves them instead.
//!
//! The trade-off: the binary's own code and data lose ASLR (the stack, the heap
//! and the shared libraries keep it). fleetctx is safe Rust, short-lived, and runs
//! with its user's rights; Go links kubectl, kubelogin and
//! gke-gcloud-auth-plugin the same way by default. Set FLEETCTX_PIE=1 to build a
//! PIE.
fn main() {
    println!("cargo::rerun-if-env-changed=FLEETCTX_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var_os("FLEETCTX_PIE").is_none() {
        println!("cargo::rustc-link-arg-bins=-no-pie");
    }
}
