//! How requests are split into buckets and charged: the partitions behind the builder.
//!
//! A [`KeyFn`] returns a key for a request, or `None` when it has none (see
//! [`MissingKey`](super::MissingKey) for what happens then). The extractors live in
//! [`crate::key`] and are re-exported here.

use std::hash::BuildHasher;

use foldhash::quality::RandomState;

use super::gcra::Quota;

pub use crate::key::KeyFn;

/// One limit for all requests: the default, with no key at all.
///
/// ```
/// use tower_rampart::rate_limit::{Global, RateLimitLayer};
///
/// let layer: RateLimitLayer<Global> = RateLimitLayer::per_second(100).build()?;
/// # let _ = layer;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Global;

/// Requests partitioned by a [`KeyFn`]; made by
/// [`RateLimitBuilder::with_key`](super::RateLimitBuilder::with_key).
#[derive(Clone, Debug)]
pub struct PerKey<K>(pub(crate) K);

/// A partition whose cost per request comes from a closure; made by
/// [`RateLimitBuilder::cost`](super::RateLimitBuilder::cost).
#[derive(Clone, Debug)]
pub struct WithCost<P, F> {
    pub(crate) inner: P,
    pub(crate) cost: F,
}

/// A partition whose quota per new key comes from a closure over the request; made by
/// [`RateLimitBuilder::quota_by`](super::RateLimitBuilder::quota_by).
#[derive(Clone, Debug)]
pub struct WithQuota<P, F> {
    pub(crate) inner: P,
    pub(crate) quota: F,
}

/// Where a request's tokens come from.
#[derive(Clone, Copy, Debug)]
pub enum Bucketing {
    /// The limiter's single bucket.
    Global,
    /// The bucket of this key hash.
    Key(u64),
    /// No key could be extracted.
    Missing,
}

/// How a limiter splits requests into buckets and charges them: [`Global`], [`PerKey`], and
/// the [`WithCost`] / [`WithQuota`] wrappers. Sealed; build one through the limiter's builder.
pub trait Partition<Req>: private::Partition<Req> {}

impl<Req, P: private::Partition<Req>> Partition<Req> for P {}

pub(crate) mod private {
    use super::*;

    pub trait Partition<Req>: Clone + Send + Sync + 'static {
        fn bucketing(&self, req: &Req, hasher: &RandomState) -> Bucketing;
        fn cost(&self, _req: &Req) -> u32 {
            1
        }
        fn quota(&self, _req: &Req) -> Option<Quota> {
            None
        }
    }

    impl<Req> Partition<Req> for Global {
        #[inline]
        fn bucketing(&self, _: &Req, _: &RandomState) -> Bucketing {
            Bucketing::Global
        }
    }

    impl<Req, K: KeyFn<Req>> Partition<Req> for PerKey<K> {
        #[inline]
        fn bucketing(&self, req: &Req, hasher: &RandomState) -> Bucketing {
            match self.0.key(req) {
                Some(key) => Bucketing::Key(hasher.hash_one(key)),
                None => Bucketing::Missing,
            }
        }
    }

    impl<Req, P, F> Partition<Req> for WithCost<P, F>
    where
        P: Partition<Req>,
        F: Fn(&Req) -> u32 + Clone + Send + Sync + 'static,
    {
        #[inline]
        fn bucketing(&self, req: &Req, hasher: &RandomState) -> Bucketing {
            self.inner.bucketing(req, hasher)
        }
        #[inline]
        fn cost(&self, req: &Req) -> u32 {
            (self.cost)(req)
        }
        fn quota(&self, req: &Req) -> Option<Quota> {
            self.inner.quota(req)
        }
    }

    impl<Req, P, F> Partition<Req> for WithQuota<P, F>
    where
        P: Partition<Req>,
        F: Fn(&Req) -> Quota + Clone + Send + Sync + 'static,
    {
        #[inline]
        fn bucketing(&self, req: &Req, hasher: &RandomState) -> Bucketing {
            self.inner.bucketing(req, hasher)
        }
        #[inline]
        fn cost(&self, req: &Req) -> u32 {
            self.inner.cost(req)
        }
        fn quota(&self, req: &Req) -> Option<Quota> {
            Some((self.quota)(req))
        }
    }
}
