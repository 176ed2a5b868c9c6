//! [`SetRequestId`]: the service made by [`SetRequestIdLayer`](super::SetRequestIdLayer).

use std::task::{Context as TaskContext, Poll};

use http::{Request, Response};
use tower_service::Service;
use tracing::Span;

use crate::context;
use crate::context::RequestId;

use super::future::ResponseFuture;
use super::layer::SetRequestIdLayer;
use super::make::{MakeRequestId, UuidV7};

/// The service made by [`SetRequestIdLayer`].
///
/// See [`SetRequestIdLayer`] for an example.
#[derive(Clone, Debug)]
pub struct SetRequestId<S, M = UuidV7> {
    pub(super) inner: S,
    pub(super) layer: SetRequestIdLayer<M>,
}

impl<S, M> SetRequestId<S, M> {
    crate::macros::inner_accessors!();
}

impl<S, M, B, R> Service<Request<B>> for SetRequestId<S, M>
where
    S: Service<Request<B>, Response = Response<R>>,
    M: MakeRequestId,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let layer = &self.layer;
        let kept = req.headers().get(&layer.header).and_then(|value| {
            let id = RequestId::from_header_value(value, &layer.rules);
            if id.is_none() {
                layer.metrics.rejected();
                tracing::debug!(
                    request_id.rejected_len = value.len(),
                    "replacing an invalid incoming request id"
                );
            } else {
                layer.metrics.accepted();
            }
            id
        });
        let id = kept.unwrap_or_else(|| {
            let from_trace = layer
                .traceparent
                .then(|| super::traceparent::trace_id(req.headers()))
                .flatten();
            let id = match from_trace {
                Some(trace) => {
                    layer.metrics.traceparent();
                    RequestId::from_safe(trace)
                }
                None => {
                    layer.metrics.generated();
                    layer.make.make_request_id()
                }
            };
            req.headers_mut()
                .insert(&layer.header, id.to_header_value());
            id
        });
        if layer.extension {
            req.extensions_mut().insert(id.clone());
        }
        // Checked first: with tracing's `log` feature on (axum's default) and no subscriber, a
        // disabled span still costs its hand-off to `log`, about 280 instructions.
        let span = if tracing::enabled!(tracing::Level::INFO) {
            tracing::info_span!("request", request_id = %id)
        } else {
            Span::none()
        };
        let mut slot = Some(id);
        let inner = {
            let _span = span.enter();
            let _scope = context::enter(&mut slot);
            self.inner.call(req)
        };
        ResponseFuture::new(inner, span, slot, layer.header.clone())
    }
}
