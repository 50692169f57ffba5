//! The OpenTelemetry GenAI client metrics (semantic conventions v1.37.0), recorded from
//! the request record with bounded labels.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use metrics::Histogram;

use super::{RequestRecord, handles, otlp};
use crate::error::ErrorClass;

/// The GenAI token-usage histogram (`gen_ai.client.token.usage`).
pub(super) const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
/// Its buckets, in tokens (the semantic conventions' advice).
pub(super) const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// The GenAI histograms of one (model, provider, error class, stream); the stream-only
/// ones exist only for streams, so a JSON-only model shows no empty series.
pub(super) struct GenAiMetrics {
    duration: Histogram,
    input_tokens: Histogram,
    output_tokens: Histogram,
    first_token: Option<Histogram>,
    per_output_token: Option<Histogram>,
}

type Key = (Arc<str>, &'static str, Option<ErrorClass>, bool);

fn handles(
    model: &Arc<str>,
    provider: &'static str,
    error: Option<ErrorClass>,
    stream: bool,
) -> Arc<GenAiMetrics> {
    static SETS: OnceLock<Mutex<crate::FastMap<Key, Arc<GenAiMetrics>>>> = OnceLock::new();
    handles::cached(
        SETS.get_or_init(Mutex::default),
        (model.clone(), provider, error, stream),
        || {
            let model = metrics::SharedString::from(model.clone());
            let op = ("gen_ai_operation_name", "chat");
            let duration = match error {
                None => metrics::histogram!(
                    "gen_ai_client_operation_duration_seconds",
                    op.0 => op.1,
                    "gen_ai_provider_name" => provider,
                    "gen_ai_request_model" => model.clone()
                ),
                Some(class) => metrics::histogram!(
                    "gen_ai_client_operation_duration_seconds",
                    op.0 => op.1,
                    "gen_ai_provider_name" => provider,
                    "gen_ai_request_model" => model.clone(),
                    "error_type" => class.as_str()
                ),
            };
            let tokens = |kind: &'static str| {
                metrics::histogram!(
                    TOKEN_USAGE,
                    op.0 => op.1,
                    "gen_ai_provider_name" => provider,
                    "gen_ai_request_model" => model.clone(),
                    "gen_ai_token_type" => kind
                )
            };
            GenAiMetrics {
                duration,
                input_tokens: tokens("input"),
                output_tokens: tokens("output"),
                first_token: stream.then(|| {
                    metrics::histogram!(
                        "gen_ai_server_time_to_first_token_seconds",
                        op.0 => op.1,
                        "gen_ai_provider_name" => provider,
                        "gen_ai_request_model" => model.clone()
                    )
                }),
                per_output_token: stream.then(|| {
                    metrics::histogram!(
                        "gen_ai_server_time_per_output_token_seconds",
                        op.0 => op.1,
                        "gen_ai_provider_name" => provider,
                        "gen_ai_request_model" => model.clone()
                    )
                }),
            }
        },
    )
}

impl RequestRecord {
    /// The GenAI client metrics (semantic conventions v1.37.0), for requests that reached
    /// a provider or were refused with an error. Labels: the operation, the serving
    /// preset, the catalog's model name, and the error class; all bounded.
    pub(super) fn gen_ai_metrics(&self, latency: Duration) {
        if self.kind.is_none() && self.error_type.is_none() {
            // Cache hits and cancellations before any provider: not a GenAI operation.
            return;
        }
        let provider: &'static str = self.kind.map_or("", otlp::span::provider_name);
        let m = handles(&self.model, provider, self.error_type, self.stream);
        m.duration.record(latency.as_secs_f64());
        let Some(u) = &self.usage else {
            return;
        };
        m.input_tokens.record(f64::from(u.prompt_tokens));
        m.output_tokens.record(f64::from(u.completion_tokens));
        if let (Some(first), Some(ttft)) = (&m.first_token, self.ttft) {
            first.record(ttft.as_secs_f64());
            if let Some(per) = &m.per_output_token
                && u.completion_tokens > 1
            {
                per.record(
                    latency.saturating_sub(ttft).as_secs_f64() / f64::from(u.completion_tokens - 1),
                );
            }
        }
    }
}
