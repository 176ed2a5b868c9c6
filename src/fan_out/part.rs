//! [`Part`]: one named service of a fan-out, with its request mapping, timeout and fallback.

use std::time::Duration;

/// One named part of a [`FanOut`](super::FanOut): a Tower service, how to build its request
/// from the incoming one ([`MapRequest`]), whether it is essential, its own timeout and an
/// optional [`PartFallback`] value.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::fan_out::Part;
///
/// let reviews = tower::service_fn(|product: u64| async move {
///     Ok::<_, std::convert::Infallible>(vec![format!("review of {product}")])
/// });
/// let part = Part::optional("reviews", reviews)
///     .request(|id: &u64| *id)
///     .timeout(Duration::from_millis(300))
///     .fallback(Vec::<String>::new);
/// assert_eq!(part.name(), "reviews");
/// assert!(!part.is_essential());
/// ```
#[derive(Clone, Debug)]
pub struct Part<S, M = Cloned, F = NoFallback> {
    pub(super) name: &'static str,
    pub(super) essential: bool,
    pub(super) timeout: Option<Duration>,
    pub(super) service: S,
    pub(super) map: M,
    pub(super) fallback: F,
}

impl<S> Part<S> {
    /// A part the response cannot do without: if it fails (and has no fallback), the
    /// fan-out fails at once with [`Rejection::PartFailed`](crate::Rejection::PartFailed)
    /// and the other parts are cancelled. It gets the incoming request cloned until
    /// [`request`](Self::request) says otherwise.
    ///
    /// ```
    /// # use tower_rampart::fan_out::Part;
    /// let core = Part::essential("core", tower::service_fn(|id: u64| async move {
    ///     Ok::<_, std::convert::Infallible>(id)
    /// }));
    /// assert!(core.is_essential());
    /// ```
    pub fn essential(name: &'static str, service: S) -> Self {
        Self::new(name, true, service)
    }

    /// A part the response can do without: if it fails or runs out of time, the fan-out
    /// still answers, with this part listed as degraded.
    ///
    /// See [`Part`] for an example.
    pub fn optional(name: &'static str, service: S) -> Self {
        Self::new(name, false, service)
    }

    fn new(name: &'static str, essential: bool, service: S) -> Self {
        Self {
            name,
            essential,
            timeout: None,
            service,
            map: Cloned,
            fallback: NoFallback,
        }
    }
}

impl<S, M, F> Part<S, M, F> {
    /// The part's name, as given to the constructor.
    ///
    /// See [`Part`] for an example.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the part is essential.
    ///
    /// See [`Part::essential`] for an example.
    pub fn is_essential(&self) -> bool {
        self.essential
    }

    /// The part's own time limit, clamped to what remains of the fan-out's overall deadline.
    /// Default: the overall deadline alone. Checked by
    /// [`FanOutBuilder::build`](super::FanOutBuilder::build): it must not be zero.
    ///
    /// See [`Part`] for an example.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// How the part's request is built from the incoming one: a closure `Fn(&Req) -> R`, or
    /// [`Cloned`] (the default).
    ///
    /// See [`Part`] for an example.
    pub fn request<M2>(self, map: M2) -> Part<S, M2, F> {
        Part {
            name: self.name,
            essential: self.essential,
            timeout: self.timeout,
            service: self.service,
            map,
            fallback: self.fallback,
        }
    }

    /// The value to use when the part fails, is rejected or runs out of time: a closure
    /// `Fn() -> T`. The part is still reported as degraded, with what happened to it, but a
    /// part with a fallback never fails the fan-out, even an essential one.
    ///
    /// See [`Part`] for an example.
    pub fn fallback<F2>(self, fallback: F2) -> Part<S, M, F2> {
        Part {
            name: self.name,
            essential: self.essential,
            timeout: self.timeout,
            service: self.service,
            map: self.map,
            fallback,
        }
    }
}

/// Builds a part's request from the fan-out's incoming request: [`Cloned`], or a closure
/// `Fn(&Req) -> R`.
///
/// ```
/// use tower_rampart::fan_out::{Cloned, MapRequest};
///
/// assert_eq!(Cloned.map(&"id-7".to_string()), "id-7");
/// let first_char = |s: &String| s.chars().next();
/// assert_eq!(first_char.map(&"id-7".to_string()), Some('i'));
/// ```
pub trait MapRequest<Req>: Clone + Send + Sync + 'static {
    /// The part's request type.
    type Request;

    /// The part's request for `req`.
    fn map(&self, req: &Req) -> Self::Request;
}

/// Gives each part a clone of the incoming request.
///
/// See [`MapRequest`] for an example.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cloned;

impl<Req: Clone> MapRequest<Req> for Cloned {
    type Request = Req;

    fn map(&self, req: &Req) -> Req {
        req.clone()
    }
}

impl<F, Req, R> MapRequest<Req> for F
where
    F: Fn(&Req) -> R + Clone + Send + Sync + 'static,
{
    type Request = R;

    fn map(&self, req: &Req) -> R {
        self(req)
    }
}

/// A value to stand in for a part that did not answer: [`NoFallback`], or a closure
/// `Fn() -> T`.
///
/// ```
/// use tower_rampart::fan_out::{PartFallback, NoFallback};
///
/// assert_eq!(PartFallback::<Vec<u8>>::fallback(&NoFallback), None);
/// assert_eq!(Vec::<u8>::new.fallback(), Some(vec![]));
/// ```
pub trait PartFallback<T>: Clone + Send + Sync + 'static {
    /// The stand-in value, if there is one.
    fn fallback(&self) -> Option<T>;
}

/// No stand-in: a part that does not answer is reported as it ended.
///
/// See [`PartFallback`] for an example.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFallback;

impl<T> PartFallback<T> for NoFallback {
    fn fallback(&self) -> Option<T> {
        None
    }
}

impl<F, T> PartFallback<T> for F
where
    F: Fn() -> T + Clone + Send + Sync + 'static,
{
    fn fallback(&self) -> Option<T> {
        Some(self())
    }
}
