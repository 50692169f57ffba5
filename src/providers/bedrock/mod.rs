//! The AWS Bedrock Converse wire format (`POST {base_url}/model/{modelId}/converse` and
//! `/converse-stream`, SigV4-signed for service `bedrock`): [`request`] translates the
//! canonical request, [`response`] the answer and [`stream`] the event-stream frames that
//! [`eventstream`] decodes; [`sigv4`] signs each request.
//!
//! Every request is signed anew (the signature covers the time and the body), so instead
//! of [`Upstream`](super::upstream::Upstream)'s fixed headers this module sends through
//! the shared client itself, reusing its transport and body helpers. Errors are
//! `{"message": ...}` bodies with the exception name in `x-amzn-ErrorType`
//! (`ThrottlingException`, `ValidationException`, ...), kept as the error's `code`.

pub mod embed;
pub mod eventstream;
pub mod invoke;
mod request;
mod response;
pub mod sigv4;
mod stream;

use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::Deserialize;

pub use request::encode_request;
pub use response::{decode_response, finish_reason};
pub use stream::{BedrockStream, translate};

use super::{ChunkStream, Provider, ProviderError, client, parse_retry_after, truncate, upstream};
use crate::{
    chat::{ChatRequest, ChatResponse},
    config::{AwsConfig, ProviderConfig},
};

/// The SigV4 service name for Bedrock's runtime API.
pub const SERVICE: &str = "bedrock";

/// The media type of ConverseStream answers.
pub const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// A provider speaking the Bedrock Converse API.
pub struct BedrockProvider {
    client: client::Client,
    base_url: String,
    aws: AwsConfig,
    /// The config's extra headers (sent unsigned).
    headers: HeaderMap,
    max_response_bytes: usize,
}

impl BedrockProvider {
    /// A provider for one config entry, sharing the gateway's pooled client.
    pub fn new(config: &ProviderConfig, client: client::Client) -> Result<Self, String> {
        let aws = config.aws.clone().ok_or_else(|| {
            "kind `bedrock` needs region, access_key_id and secret_access_key".to_owned()
        })?;
        if let Some(token) = &aws.session_token {
            HeaderValue::try_from(token.expose())
                .map_err(|_| "session_token is not a valid header value".to_owned())?;
        }
        url::Url::parse(&config.base_url).map_err(|e| format!("base_url: {e}"))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|e| format!("header name `{name}`: {e}"))?;
            let mut value = HeaderValue::try_from(value.expose())
                .map_err(|_| format!("header `{name}` has an invalid value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(BedrockProvider {
            client,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            aws,
            headers,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// `{base_url}/model/{model}/converse` (or `/converse-stream`), the model id encoded
    /// as one path segment: `:` in a version suffix and `/` in an ARN are escaped.
    pub fn url(&self, model: &str, stream: bool) -> Result<url::Url, ProviderError> {
        let method = if stream {
            "converse-stream"
        } else {
            "converse"
        };
        let url = format!(
            "{}/model/{}/{method}",
            self.base_url,
            sigv4::uri_encode(model)
        );
        url::Url::parse(&url)
            .map_err(|e| ProviderError::Untranslatable(format!("bedrock: model URL: {e}")))
    }

    /// The signed headers of a POST of `body` to `url` made at `now`.
    pub fn signed_headers(&self, url: &url::Url, body: &[u8], now: SystemTime) -> HeaderMap {
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let date = sigv4::AmzDate::at(now);
        let payload_hash = sigv4::sha256_hex(body);
        let token = self.aws.session_token.as_ref().map(|t| t.expose());
        let mut signed = vec![
            ("content-type", "application/json"),
            ("host", host.as_str()),
            ("x-amz-content-sha256", payload_hash.as_str()),
            ("x-amz-date", date.as_str()),
        ];
        if let Some(token) = token {
            signed.push(("x-amz-security-token", token));
        }
        let signer = sigv4::Signer {
            access_key_id: self.aws.access_key_id.expose(),
            secret_access_key: self.aws.secret_access_key.expose(),
            region: &self.aws.region,
            service: SERVICE,
        };
        let signature = signer.sign(
            &sigv4::Request {
                method: "POST",
                path: url.path(),
                query: "",
                headers: &signed,
                payload_hash: &payload_hash,
            },
            &date,
        );
        let mut headers = self.headers.clone();
        // reqwest writes `host` from the URL; the rest go as signed.
        for (name, value) in signed.into_iter().filter(|(n, _)| *n != "host") {
            if let Ok(mut value) = HeaderValue::try_from(value) {
                value.set_sensitive(name == "x-amz-security-token");
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        if let Ok(mut value) = HeaderValue::try_from(signature.authorization) {
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    /// `{base_url}/model/{model}/invoke` (or `/invoke-with-response-stream`): InvokeModel,
    /// for Messages requests passed through to Anthropic's models ([`invoke`]).
    pub fn invoke_url(&self, model: &str, stream: bool) -> Result<url::Url, ProviderError> {
        let method = if stream {
            "invoke-with-response-stream"
        } else {
            "invoke"
        };
        let url = format!(
            "{}/model/{}/{method}",
            self.base_url,
            sigv4::uri_encode(model)
        );
        url::Url::parse(&url)
            .map_err(|e| ProviderError::Untranslatable(format!("bedrock: model URL: {e}")))
    }

    /// Signs and sends one call; a non-success status becomes a [`ProviderError::Status`].
    async fn post(
        &self,
        model: &str,
        body: Vec<u8>,
        stream: bool,
    ) -> Result<upstream::Answer, ProviderError> {
        let url = self.url(model, stream)?;
        self.send(url, body, stream).await
    }

    /// Signs and sends one call to `url` (Converse, or `InvokeModel` for embeddings).
    async fn send(
        &self,
        url: url::Url,
        body: Vec<u8>,
        stream: bool,
    ) -> Result<upstream::Answer, ProviderError> {
        let mut headers = self.signed_headers(&url, &body, SystemTime::now());
        let accept = if stream {
            EVENT_STREAM
        } else {
            "application/json"
        };
        headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
        // Not signed: SigV4 covers the headers it lists, and this one is added after.
        if let Some(tp) = crate::telemetry::trace::upstream_traceparent() {
            headers.insert(crate::telemetry::trace::TRACEPARENT, tp);
        }
        let request = client::post(upstream::uri(&url)?, headers, body);
        let resp = self
            .client
            .send(request)
            .await
            .map_err(upstream::transport_error)?;
        let status = resp.status();
        if status.is_success() {
            if stream {
                expect_event_stream(resp.headers())?;
            }
            return Ok(resp);
        }
        let retry_after = parse_retry_after(resp.headers());
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = upstream::error_body(resp).await?;
        Err(status_error(
            status,
            &body,
            error_type.as_deref(),
            retry_after,
        ))
    }
}

/// The id a translated answer carries: AWS's request id when it sent one.
fn answer_id(resp: &upstream::Answer) -> String {
    match resp
        .headers()
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
    {
        Some(id) => format!("bedrock-{id}"),
        None => format!("bedrock-{:016x}", fastrand::u64(..)),
    }
}

/// A stream was asked for: a JSON (or any other) answer is not it.
fn expect_event_stream(headers: &HeaderMap) -> Result<(), ProviderError> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind.is_empty() || kind.starts_with(EVENT_STREAM) {
        Ok(())
    } else {
        Err(ProviderError::Malformed(format!(
            "a stream was asked for but the provider answered `{kind}`"
        )))
    }
}

/// An error answer: Bedrock's `{"message": ...}` (some AWS front ends write `Message`),
/// with the exception name from `x-amzn-ErrorType` (`ThrottlingException:http://...`) or
/// the body's `__type` as the code.
pub fn status_error(
    status: StatusCode,
    body: &[u8],
    error_type: Option<&str>,
    retry_after: Option<Duration>,
) -> ProviderError {
    #[derive(Deserialize)]
    struct Body {
        #[serde(alias = "Message")]
        message: Option<String>,
        #[serde(rename = "__type")]
        kind: Option<String>,
    }
    let parsed = serde_json::from_slice::<Body>(body).ok();
    let code = error_type
        .map(|t| t.split(':').next().unwrap_or(t))
        .or_else(|| {
            let kind = parsed.as_ref()?.kind.as_deref()?;
            Some(kind.rsplit('#').next().unwrap_or(kind))
        })
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let message = match parsed.and_then(|p| p.message) {
        Some(m) => m,
        None => {
            let text = String::from_utf8_lossy(body);
            match text.trim() {
                "" => status
                    .canonical_reason()
                    .unwrap_or("upstream error")
                    .to_owned(),
                t => truncate(t, 1000),
            }
        }
    };
    ProviderError::Status {
        status,
        message,
        kind: None,
        code,
        param: None,
        retry_after,
    }
}

/// A Messages request to one of Anthropic's models goes through InvokeModel as the
/// caller's body ([`invoke`]); everything else through Converse.
fn passed_through<'a>(
    request: &'a ChatRequest,
    model: &str,
) -> Option<&'a crate::chat::native::NativeRequest> {
    super::anthropic::messages_native(request).filter(|_| invoke::is_anthropic_model(model))
}

impl Provider for BedrockProvider {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            if let Some(native) = passed_through(request, model) {
                let body = invoke::invoke_body(native)?;
                let answer = self
                    .send(self.invoke_url(model, false)?, body, false)
                    .await?;
                let bytes = upstream::body(answer, self.max_response_bytes).await?;
                let mut response = super::anthropic::decode_response(&bytes)?;
                response.native = Some(bytes);
                return Ok(response);
            }
            let body = encode_request(request)?;
            let answer = self.post(model, body, false).await?;
            let id = answer_id(&answer);
            let body = upstream::body(answer, self.max_response_bytes).await?;
            decode_response(&body, model, &id)
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
        Box::pin(async move {
            if let Some(native) = passed_through(request, model) {
                let body = invoke::invoke_body(native)?;
                let answer = self.send(self.invoke_url(model, true)?, body, true).await?;
                return Ok(invoke::translate(
                    answer.bytes_stream(),
                    self.max_response_bytes,
                ));
            }
            let body = encode_request(request)?;
            let answer = self.post(model, body, true).await?;
            let id = answer_id(&answer);
            Ok(translate(
                answer.bytes_stream(),
                BedrockStream::new(model, &id),
                self.max_response_bytes,
            ))
        })
    }

    fn embeds(&self, model: &str) -> bool {
        embed::Family::of(model).is_some()
    }

    fn embed<'a>(
        &'a self,
        request: &'a crate::embeddings::EmbedRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<crate::embeddings::EmbedResponse, ProviderError>> {
        Box::pin(self.embed_once(request, model))
    }
}

#[cfg(test)]
mod tests;
