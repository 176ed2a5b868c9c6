//! Internal macros shared by the wrappers.

// Used by every wrapper; a build with no layer and no `http` feature has none.
#![allow(unused_macros, unused_imports)]

/// `get_ref`, `get_mut` and `into_inner` for a wrapper whose wrapped service is the field
/// `inner`. Invoke inside an `impl<S, ..> Wrapper<S, ..>` block.
macro_rules! inner_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the service, dropping this layer's per-service parts (shared state lives on
        /// in the layer and in other clones).
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub(crate) use inner_accessors;
