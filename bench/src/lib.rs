//! What tower-rampart's benchmarks share: the helpers of the criterion benches, and the
//! cases of the instruction-count harness (`src/bin/icount.rs`), each beside its baseline,
//! its floor and the crates it compares with.

pub mod cases;
pub mod support;
