//! Atomics and `Arc`, from `std` in normal builds and from `loom` under
//! `cfg(all(test, tower_rampart_loom))`.
//!
//! Lock-free code in this crate imports its atomics only from here, so the loom models
//! (`RUSTFLAGS="--cfg tower_rampart_loom" cargo test --release --lib loom_`) explore every
//! interleaving of the real code rather than of a copy.

#[cfg(all(test, tower_rampart_loom))]
pub(crate) use loom::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
#[cfg(not(all(test, tower_rampart_loom)))]
pub(crate) use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
