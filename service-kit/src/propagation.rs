//! Trace-context propagation: which headers travel from an incoming request to the outgoing calls
//! it causes, and how the OpenTelemetry context is read from and written into them.
//!
//! Formats: W3C trace-context and baggage, and B3 (the `x-b3-*` headers of the Istio tutorial, and
//! the single `b3` header). On extraction the last valid format wins, so W3C is listed last.

use std::sync::LazyLock;

use http::{HeaderMap, HeaderName};
use opentelemetry::Context;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_propagator_b3::{B3Encoding, Propagator as B3};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The marker header of mirrored (shadow) requests; its value names the mirror.
pub const SHADOW_HEADER: HeaderName = HeaderName::from_static("x-shadow");

/// Headers forwarded from an incoming request to its outgoing call: the Go service's list, the
/// W3C and single-header B3 formats, and the shadow marker (so a whole shadow call tree is marked).
pub const FORWARDED_HEADERS: [HeaderName; 12] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-b3-traceid"),
    HeaderName::from_static("x-b3-spanid"),
    HeaderName::from_static("x-b3-parentspanid"),
    HeaderName::from_static("x-b3-sampled"),
    HeaderName::from_static("x-b3-flags"),
    HeaderName::from_static("x-ot-span-context"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("baggage"),
    HeaderName::from_static("b3"),
    SHADOW_HEADER,
];

/// Headers that name a position in a trace: replaced by our own span's context when exporting.
const POSITION_HEADERS: [HeaderName; 7] = [
    HeaderName::from_static("x-b3-traceid"),
    HeaderName::from_static("x-b3-spanid"),
    HeaderName::from_static("x-b3-parentspanid"),
    HeaderName::from_static("x-b3-sampled"),
    HeaderName::from_static("x-b3-flags"),
    HeaderName::from_static("b3"),
    HeaderName::from_static("traceparent"),
];

static EXTRACT: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![
        Box::new(B3::with_encoding(B3Encoding::SingleAndMultiHeader)),
        Box::new(BaggagePropagator::new()),
        Box::new(TraceContextPropagator::new()),
    ])
});

static INJECT: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![
        Box::new(B3::with_encoding(B3Encoding::MultipleHeader)),
        Box::new(BaggagePropagator::new()),
        Box::new(TraceContextPropagator::new()),
    ])
});

/// The remote parent carried by `headers`, if any (an empty context otherwise).
pub fn extract(headers: &HeaderMap) -> Context {
    EXTRACT.extract(&HeaderExtractor(headers))
}

/// Makes the trace context in `headers` the parent of `span`. A no-op when spans are not exported.
pub fn adopt_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let parent = extract(headers);
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to parent.
        let _ = span.set_parent(parent);
    }
}

/// Writes the context of `span` (the caller's client span) into `headers`. Returns false when the
/// span has no OpenTelemetry context (no exporter), leaving `headers` untouched.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) -> bool {
    if span.is_disabled() {
        return false;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return false;
    }
    for name in &POSITION_HEADERS {
        headers.remove(name);
    }
    INJECT.inject_context(&cx, &mut HeaderInjector(headers));
    if headers.get("tracestate").is_some_and(|v| v.is_empty()) {
        headers.remove("tracestate");
    }
    true
}

/// The trace id of `span` in hex, when it is exported (None otherwise).
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// Copies the forwarded headers of `incoming` into `outgoing`, then, when OpenTelemetry is active,
/// replaces the trace position with `client_span`'s own, so the next hop nests under it.
/// `x-request-id` and `x-ot-span-context` always pass through unchanged.
pub fn forward(incoming: &HeaderMap, outgoing: &mut HeaderMap, client_span: &tracing::Span) {
    for name in &FORWARDED_HEADERS {
        for value in incoming.get_all(name) {
            outgoing.append(name.clone(), value.clone());
        }
    }
    inject(client_span, outgoing);
}

/// Whether the request is a mirrored copy.
pub fn is_shadow(headers: &HeaderMap) -> bool {
    headers.contains_key(SHADOW_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_opentelemetry_every_listed_header_passes_through_unchanged() {
        let mut incoming = HeaderMap::new();
        for name in &FORWARDED_HEADERS {
            incoming.insert(name.clone(), format!("v-{name}").parse().unwrap());
        }
        incoming.insert("authorization", "secret".parse().unwrap());
        let mut outgoing = HeaderMap::new();
        forward(&incoming, &mut outgoing, &tracing::Span::none());
        for name in &FORWARDED_HEADERS {
            assert_eq!(outgoing[name], format!("v-{name}"), "{name}");
        }
        assert!(!outgoing.contains_key("authorization"));
    }

    #[test]
    fn b3_and_w3c_parents_are_both_understood() {
        let mut b3 = HeaderMap::new();
        b3.insert("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7".parse().unwrap());
        b3.insert("x-b3-spanid", "e457b5a2e4d86bd1".parse().unwrap());
        b3.insert("x-b3-sampled", "1".parse().unwrap());
        let cx = extract(&b3);
        assert_eq!(cx.span().span_context().trace_id().to_string(), "80f198ee56343ba864fe8b2a57d3eff7");

        let mut w3c = HeaderMap::new();
        w3c.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
        assert_eq!(extract(&w3c).span().span_context().trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
    }
}
