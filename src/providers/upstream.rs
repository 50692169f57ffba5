//! One upstream endpoint over the shared HTTP client: auth and fixed headers built once,
//! error statuses turned into [`ProviderError`]s that keep the provider's words, bodies
//! read under a byte limit.

use bytes::{Bytes, BytesMut};

use super::{ProviderError, client, limits, parse_retry_after, truncate};

/// How much of an error answer's body is read: enough for any provider's error message
/// (only the first 1,000 bytes of text are kept), and no more whatever it sends.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Where a provider's requests go and the headers every one of them carries.
pub struct Upstream {
    client: client::Client,
    url: url::Url,
    /// `url` as the client takes it, converted once.
    uri: http::Uri,
    headers: http::HeaderMap,
    max_response_bytes: usize,
}

/// What the provider answered with a success status.
pub type Answer = client::Response;

impl Upstream {
    /// An endpoint at `url` whose requests carry `headers` (marked sensitive: they hold
    /// credentials and never print), and whose answers and stream events may be up to
    /// `max_response_bytes` long.
    pub fn new(
        client: client::Client,
        url: &str,
        headers: Vec<(String, String)>,
        max_response_bytes: usize,
    ) -> Result<Upstream, String> {
        let url = url::Url::parse(url).map_err(|e| format!("base_url: {e}"))?;
        let uri = http::Uri::try_from(url.as_str()).map_err(|e| format!("base_url: {e}"))?;
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|e| format!("header name `{name}`: {e}"))?;
            let mut value = http::HeaderValue::try_from(value)
                .map_err(|_| format!("header `{name}` has an invalid value"))?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        map.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok(Upstream {
            client,
            url,
            uri,
            headers: map,
            max_response_bytes,
        })
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The most bytes one answer (or one stream event) from this endpoint may have.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Reads a whole success body, up to this endpoint's `max_response_bytes`.
    pub async fn body(&self, answer: Answer) -> Result<Bytes, ProviderError> {
        body(answer, self.max_response_bytes).await
    }

    /// POSTs a JSON body; a non-success status becomes a [`ProviderError::Status`].
    pub async fn post(&self, body: Vec<u8>, stream: bool) -> Result<Answer, ProviderError> {
        send(
            &self.client,
            self.uri.clone(),
            self.headers.clone(),
            body,
            stream,
            &[],
        )
        .await
    }

    /// As [`Upstream::post`], to a URL derived from the endpoint's (per-model paths).
    pub async fn post_to(
        &self,
        url: url::Url,
        body: Vec<u8>,
        stream: bool,
    ) -> Result<Answer, ProviderError> {
        self.post_with(url, body, stream, &[]).await
    }

    /// As [`Upstream::post_to`], with `extra` headers that replace the endpoint's own of
    /// the same name (a passed-through request's `anthropic-version`, say).
    pub async fn post_with(
        &self,
        url: url::Url,
        body: Vec<u8>,
        stream: bool,
        extra: &[(http::HeaderName, http::HeaderValue)],
    ) -> Result<Answer, ProviderError> {
        send(
            &self.client,
            uri(&url)?,
            self.headers.clone(),
            body,
            stream,
            extra,
        )
        .await
    }
}

/// `url` as the HTTP client takes it.
pub fn uri(url: &url::Url) -> Result<http::Uri, ProviderError> {
    http::Uri::try_from(url.as_str())
        .map_err(|e| ProviderError::Connect(format!("the provider's URL: {e}")))
}

/// POSTs `body` with `headers` (then `accept`, the attempt's `traceparent` and `extra`,
/// each replacing any of its name); a non-success status becomes a
/// [`ProviderError::Status`] with the provider's words.
pub async fn send(
    client: &client::Client,
    uri: http::Uri,
    mut headers: http::HeaderMap,
    body: Vec<u8>,
    stream: bool,
    extra: &[(http::HeaderName, http::HeaderValue)],
) -> Result<Answer, ProviderError> {
    let accept = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    headers.insert(http::header::ACCEPT, http::HeaderValue::from_static(accept));
    // The attempt's trace context ([`crate::telemetry::trace`]), when it has one.
    if let Some(tp) = crate::telemetry::trace::upstream_traceparent() {
        headers.insert(crate::telemetry::trace::TRACEPARENT, tp);
    }
    // Each name given replaces the endpoint's; several values of one name all go.
    for (name, _) in extra {
        headers.remove(name);
    }
    for (name, value) in extra {
        headers.append(name.clone(), value.clone());
    }
    let resp = client
        .send(client::post(uri, headers, body))
        .await
        .map_err(transport_error)?;
    let status = resp.status();
    if status.is_success() {
        if stream {
            expect_event_stream(&resp)?;
        }
        return Ok(resp);
    }
    let retry_after = parse_retry_after(resp.headers());
    let body = error_body(resp).await?;
    Err(ProviderError::from_status(status, &body, retry_after))
}

/// A stream was asked for: anything but an event stream is not the answer asked for.
fn expect_event_stream(resp: &Answer) -> Result<(), ProviderError> {
    let kind = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind.is_empty() || kind.starts_with("text/event-stream") {
        Ok(())
    } else {
        Err(ProviderError::Malformed(format!(
            "a stream was asked for but the provider answered `{kind}`"
        )))
    }
}

/// Reads a whole success body of at most `limit` bytes. Reading stops at the limit: a
/// longer body is never buffered, and fails as malformed.
pub async fn body(mut answer: Answer, limit: usize) -> Result<Bytes, ProviderError> {
    let too_large = || limits::too_large("the answer", limit);
    let announced = answer.content_length().unwrap_or(0);
    if usize::try_from(announced).map_or(true, |n| n > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = answer.chunk().await.map_err(transport_error)? {
        if chunk.len() > limit - buf.len() {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads the first [`ERROR_BODY_LIMIT`] bytes of an error answer; the rest is dropped
/// unread (the status says what matters, and the message is cut anyway).
pub async fn error_body(mut answer: Answer) -> Result<Bytes, ProviderError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = answer.chunk().await.map_err(transport_error)? {
        let room = ERROR_BODY_LIMIT - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() == ERROR_BODY_LIMIT {
            break;
        }
    }
    Ok(buf.freeze())
}

/// Parses a whole success body as `T`, or says what was wrong with it.
pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::Malformed(format!(
            "{e} in {}",
            truncate(&String::from_utf8_lossy(body), 200)
        ))
    })
}

/// Classifies a transport failure; the error names neither the URL nor a header.
pub fn transport_error(e: client::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else if e.is_connect() {
        ProviderError::Connect(source_chain(&e))
    } else {
        ProviderError::Reset(source_chain(&e))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests;
