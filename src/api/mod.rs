//! Ingress: the REST shim (OpenAI-compatible) and the gRPC service, both over [`Gateway`].
//!
//! [`Gateway`]: crate::gateway::Gateway

pub mod admin;
pub mod anthropic;
pub mod grpc;
pub mod openai;
pub mod responses;
pub mod status;

use http::HeaderMap;

/// Response header naming the provider that served.
pub const PROVIDER_HEADER: &str = "x-switchyard-provider";
/// Response header listing the attempts in order with their outcomes.
pub const ATTEMPTS_HEADER: &str = "x-switchyard-attempts";
/// Request/response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The caller's request id (`x-request-id`) when it sent a sane one, else a new random one.
pub fn request_id(headers: &HeaderMap) -> String {
    request_id_from(headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()))
}

/// As [`request_id`], from the header's value.
pub fn request_id_from(sent: Option<&str>) -> String {
    sent.filter(|v| {
        !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    })
    .map_or_else(
        || format!("req_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..)),
        str::to_owned,
    )
}
