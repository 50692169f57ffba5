//! The OpenTelemetry GenAI client metrics (semantic conventions v1.37.0), recorded from
//! the request record with bounded labels.

use std::time::Duration;

use super::{RequestRecord, otlp};

/// The GenAI token-usage histogram (`gen_ai.client.token.usage`).
pub(super) const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
/// Its buckets, in tokens (the semantic conventions' advice).
pub(super) const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

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
        let model = metrics::SharedString::from(self.model.clone());
        let op = ("gen_ai_operation_name", "chat");
        match self.error_type {
            None => metrics::histogram!(
                "gen_ai_client_operation_duration_seconds",
                op.0 => op.1,
                "gen_ai_provider_name" => provider,
                "gen_ai_request_model" => model.clone()
            )
            .record(latency.as_secs_f64()),
            Some(class) => metrics::histogram!(
                "gen_ai_client_operation_duration_seconds",
                op.0 => op.1,
                "gen_ai_provider_name" => provider,
                "gen_ai_request_model" => model.clone(),
                "error_type" => class.as_str()
            )
            .record(latency.as_secs_f64()),
        }
        let Some(u) = &self.usage else {
            return;
        };
        for (kind, n) in [("input", u.prompt_tokens), ("output", u.completion_tokens)] {
            metrics::histogram!(
                TOKEN_USAGE,
                op.0 => op.1,
                "gen_ai_provider_name" => provider,
                "gen_ai_request_model" => model.clone(),
                "gen_ai_token_type" => kind
            )
            .record(f64::from(n));
        }
        if let (true, Some(ttft)) = (self.stream, self.ttft) {
            metrics::histogram!(
                "gen_ai_server_time_to_first_token_seconds",
                op.0 => op.1,
                "gen_ai_provider_name" => provider,
                "gen_ai_request_model" => model.clone()
            )
            .record(ttft.as_secs_f64());
            if u.completion_tokens > 1 {
                let per =
                    latency.saturating_sub(ttft).as_secs_f64() / f64::from(u.completion_tokens - 1);
                metrics::histogram!(
                    "gen_ai_server_time_per_output_token_seconds",
                    op.0 => op.1,
                    "gen_ai_provider_name" => provider,
                    "gen_ai_request_model" => model
                )
                .record(per);
            }
        }
    }
}
