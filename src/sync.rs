//! Atomics and `Arc`, from `std` in normal builds and from `loom` under
//! `cfg(all(test, tower_rampart_loom))`.
//!
//! Lock-free code in this crate imports its atomics only from here, so the loom models
//! (`RUSTFLAGS="--cfg tower_rampart_loom" cargo test --release --lib loom_`) explore every
//! interleaving of the real code rather than of a copy.

#[cfg(all(test, tower_rampart_loom))]
#[allow(unused_imports)]
pub(crate) use loom::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
};
// A build with only some features uses only some of these.
#[cfg(not(all(test, tower_rampart_loom)))]
#[allow(unused_imports)]
pub(crate) use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
};
