//! Keys read from request headers and URIs: [`HeaderKey`] and [`UpstreamHost`].

use http::{HeaderName, Request};

use super::KeyFn;

/// The value of a request header, such as an API key or a user id.
///
/// Requests without the header have no key. The value is hashed in place, never copied or
/// stored, so a long value costs its hashing and nothing else.
///
/// ```
/// use tower_rampart::key::{HeaderKey, KeyFn};
///
/// let api_key = HeaderKey::new(http::HeaderName::from_static("x-api-key"));
/// let req = http::Request::builder().header("x-api-key", "k-123").body(()).unwrap();
/// assert_eq!(api_key.key(&req), Some(&b"k-123"[..]));
/// assert_eq!(api_key.key(&http::Request::new(())), None);
/// ```
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys requests by the value of the header `name`.
    ///
    /// ```
    /// # use tower_rampart::key::HeaderKey;
    /// let user = HeaderKey::new(http::HeaderName::from_static("x-user-id"));
    /// # let _ = user;
    /// ```
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl<B: 'static> KeyFn<Request<B>> for HeaderKey {
    type Key<'r> = &'r [u8];

    fn key<'r>(&self, req: &'r Request<B>) -> Option<&'r [u8]> {
        req.headers().get(&self.name).map(|v| v.as_bytes())
    }
}

/// Longest authority [`UpstreamHost`] accepts: a 253-byte DNS name, `:` and a 5-digit port.
pub const MAX_AUTHORITY_LEN: usize = 259;

/// The upstream's authority (`host:port`) of an outbound `http::Request`: one breaker per
/// backend on a client stack.
///
/// Read from the URI's authority, else from the `Host` header. A request with neither, or
/// whose authority is longer than [`MAX_AUTHORITY_LEN`] bytes (no DNS name is), has no key
/// and uses the layer's shared breaker.
///
/// On a **server** stack the `Host` header is chosen by the client: each distinct value is a
/// new key. The keyed layer bounds how many it holds (`max_keys`), stores only a hash, and
/// exports no metric series per key, so hostile values cost a bounded amount; still, key a
/// server-side breaker by something the server controls (the route, the upstream it calls).
///
/// ```
/// use tower_rampart::key::{KeyFn, UpstreamHost};
///
/// let request = http::Request::get("http://billing.internal:8080/charge").body(()).unwrap();
/// assert_eq!(UpstreamHost.key(&request), Some("billing.internal:8080"));
///
/// # #[cfg(feature = "circuit-breaker")] {
/// use tower_rampart::circuit_breaker::CircuitBreakerLayer;
/// let layer = CircuitBreakerLayer::builder().with_key(UpstreamHost).build()?;
/// # let _ = layer;
/// # }
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct UpstreamHost;

impl<B> KeyFn<http::Request<B>> for UpstreamHost {
    type Key<'r>
        = &'r str
    where
        B: 'r;

    fn key<'r>(&self, req: &'r http::Request<B>) -> Option<&'r str> {
        let authority = match req.uri().authority() {
            Some(authority) => authority.as_str(),
            None => req
                .headers()
                .get(http::header::HOST)
                .and_then(|host| host.to_str().ok())?,
        };
        (authority.len() <= MAX_AUTHORITY_LEN).then_some(authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a client-chosen `Host` of any size became a key (and, through the
    /// breaker's name, a metrics label).
    #[test]
    fn an_oversized_authority_has_no_key() {
        let long = "a".repeat(MAX_AUTHORITY_LEN + 1);
        let req = Request::builder().header("host", &long).body(()).unwrap();
        assert_eq!(UpstreamHost.key(&req), None);
        let fits = "a".repeat(MAX_AUTHORITY_LEN);
        let req = Request::builder().header("host", &fits).body(()).unwrap();
        assert_eq!(UpstreamHost.key(&req), Some(fits.as_str()));
    }
}
