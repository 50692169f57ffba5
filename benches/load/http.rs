//! A minimal HTTP/1.1 client: keep-alive, Content-Length and chunked bodies, and the time
//! a stream's first content arrived.

use std::{io, net::SocketAddr, sync::Arc, time::Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The response body's framing.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes.
    Close,
}

struct Head {
    status: u16,
    framing: Framing,
    close: bool,
    captured: Option<String>,
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    /// When the last body byte arrived.
    pub(crate) last_byte: Instant,
    /// When the first body byte arrived.
    pub(crate) first_byte: Option<Instant>,
    pub(crate) keep_alive: bool,
    /// The value of the header named by [`Conn::capture`], when asked for and present.
    pub(crate) captured: Option<String>,
    /// When the first SSE event with non-empty `content` arrived, if [`Conn::watch`] asked.
    pub(crate) first_content: Option<Instant>,
    /// The client hung up at the first content, as [`Watch::HangUpAtFirstContent`] asks:
    /// the body is incomplete on purpose.
    pub(crate) hung_up: bool,
}

/// What a connection watches for in a chunked (SSE) body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    Nothing,
    /// Notes when the first event with non-empty `content` arrives.
    FirstContent,
    /// Notes it, then stops reading: the caller drops the connection mid-stream, as a
    /// client that goes away does.
    HangUpAtFirstContent,
}

pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A response header whose value each [`Reply`] carries (lower case); none by default,
    /// so that the load bench allocates nothing per reply.
    capture: Option<&'static str>,
    watch: Watch,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            capture: None,
            watch: Watch::Nothing,
        })
    }

    /// Keeps the value of response header `name` (lower case) in every [`Reply`].
    pub(crate) fn capture(mut self, name: &'static str) -> Conn {
        self.capture = Some(name);
        self
    }

    /// Watches every streamed body for its first content.
    pub(crate) fn watch(mut self, watch: Watch) -> Conn {
        self.watch = watch;
        self
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more bytes into the buffer.
    async fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = self.buf.len();
                self.buf.resize(n * 2, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.end += n;
        Ok(())
    }

    /// Takes up to `n` buffered bytes into `body` (reading when none are buffered).
    async fn take(&mut self, mut n: usize, body: &mut Vec<u8>) -> io::Result<()> {
        while n > 0 {
            if self.start == self.end {
                self.fill().await?;
            }
            let k = n.min(self.end - self.start);
            body.extend_from_slice(&self.buf[self.start..self.start + k]);
            self.start += k;
            n -= k;
        }
        Ok(())
    }

    /// The next CRLF-terminated line, consumed, without its CRLF.
    async fn line(&mut self) -> io::Result<(usize, usize)> {
        loop {
            if let Some(i) = find(self.avail(), b"\r\n") {
                let s = self.start;
                self.start += i + 2;
                return Ok((s, s + i));
            }
            if self.end - self.start > 4096 {
                return Err(invalid("chunk-size line too long"));
            }
            self.fill().await?;
        }
    }

    /// Sends one request and reads the whole response into `body`.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        body: &mut Vec<u8>,
    ) -> io::Result<Reply> {
        if self.start != self.end {
            return Err(invalid("unexpected bytes before the response"));
        }
        self.stream.write_all(request).await?;
        let head_len = loop {
            if let Some(i) = find(self.avail(), b"\r\n\r\n") {
                break i + 4;
            }
            if self.end - self.start > 64 * 1024 {
                return Err(invalid("response head too large"));
            }
            self.fill().await?;
        };
        let head = parse_head(&self.buf[self.start..self.start + head_len], self.capture)?;
        self.start += head_len;
        body.clear();
        let has_body =
            !matches!(head.framing, Framing::Length(0)) && head.status != 204 && head.status != 304;
        let mut first_byte = None;
        if has_body {
            while self.start == self.end {
                self.fill().await?;
            }
            first_byte = Some(Instant::now());
        }
        let mut keep_alive = !head.close;
        let mut first_content = None;
        let mut scanned = 0;
        if has_body {
            match head.framing {
                Framing::Length(n) => self.take(n, body).await?,
                Framing::Chunked => loop {
                    let (s, e) = self.line().await?;
                    let size_text = std::str::from_utf8(&self.buf[s..e])
                        .map_err(|_| invalid("bad chunk size"))?;
                    let size_text = size_text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_text, 16)
                        .map_err(|_| invalid(format!("bad chunk size `{size_text}`")))?;
                    if size == 0 {
                        // Trailers, then the empty line.
                        loop {
                            let (s, e) = self.line().await?;
                            if s == e {
                                break;
                            }
                        }
                        break;
                    }
                    self.take(size, body).await?;
                    if self.watch != Watch::Nothing
                        && first_content.is_none()
                        && has_content(body, &mut scanned)
                    {
                        first_content = Some(Instant::now());
                        if self.watch == Watch::HangUpAtFirstContent {
                            return Ok(Reply {
                                status: head.status,
                                last_byte: Instant::now(),
                                first_byte,
                                keep_alive: false,
                                captured: head.captured,
                                first_content,
                                hung_up: true,
                            });
                        }
                    }
                    let (s, e) = self.line().await?;
                    if s != e {
                        return Err(invalid("chunk not followed by CRLF"));
                    }
                },
                Framing::Close => {
                    keep_alive = false;
                    loop {
                        body.extend_from_slice(self.avail());
                        self.start = self.end;
                        match self.fill().await {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        Ok(Reply {
            status: head.status,
            last_byte: Instant::now(),
            first_byte,
            keep_alive,
            captured: head.captured,
            first_content,
            hung_up: false,
        })
    }
}

/// Whether `body[*from..]` holds a non-empty `"content":"…"` (an SSE delta with text, not
/// the role chunk's empty one); moves `from` on so that the next call scans only what is new.
fn has_content(body: &[u8], from: &mut usize) -> bool {
    const KEY: &[u8] = b"\"content\":\"";
    let mut at = (*from).min(body.len());
    while let Some(i) = find(&body[at..], KEY) {
        let value = at + i + KEY.len();
        match body.get(value) {
            Some(b'"') => at = value,
            Some(_) => return true,
            // The value is in the next chunk: look at this key again then.
            None => break,
        }
    }
    *from = body.len().saturating_sub(KEY.len());
    false
}

fn parse_head(head: &[u8], capture: Option<&str>) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line `{status_line}`")))?;
    let mut framing = Framing::Close;
    let mut close = status_line.starts_with("HTTP/1.0");
    let mut captured = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(v.parse().map_err(|_| invalid("bad content-length"))?);
        } else if k.eq_ignore_ascii_case("transfer-encoding")
            && v.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        } else if capture.is_some_and(|c| k.eq_ignore_ascii_case(c)) {
            captured = Some(v.to_owned());
        }
    }
    Ok(Head {
        status,
        framing,
        close,
        captured,
    })
}

/// The user's message in every request but the burst's.
const PROMPT: &str = "Say hello in one short sentence.";

/// A chat completion request's JSON body.
pub(crate) fn chat_body(model: &str, prompt: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{prompt}"}}]{}}}"#,
        if stream { r#","stream":true"# } else { "" }
    )
}

/// The one header every request carries besides the framing ones (the gateway's configs
/// accept it; the mocks and nginx ignore it).
pub(crate) const AUTHORIZATION: &str = "Bearer sk-load-bench-client";

/// The signing key of the `switchyard-signed` target: its name and secret.
pub(crate) const SIGNING_KEY_ID: &str = "signer";
pub(crate) const SIGNING_SECRET: &str = "load-bench-signing-secret-0123456789abcdef";

/// One HMAC-signed POST /v1/chat/completions of a JSON request, unique by its `user`
/// field (`caller` and `n`), so that no signature repeats and none is refused as a replay.
pub(crate) fn signed_request(host: SocketAddr, model: &str, caller: usize, n: u64) -> Vec<u8> {
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{PROMPT}"}}],"user":"load-{caller}-{n}"}}"#
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let path = "/v1/chat/completions";
    let signature = switchyard::auth::signed::sign(
        SIGNING_SECRET.as_bytes(),
        "POST",
        path,
        &now,
        body.as_bytes(),
    );
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: switchyard-load\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\n\
         x-switchyard-key-id: {SIGNING_KEY_ID}\r\nx-switchyard-timestamp: {now}\r\n\
         x-switchyard-signature: {signature}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One POST /v1/chat/completions, head and body, as sent to `host`.
pub(crate) fn chat_request(host: SocketAddr, model: &str, stream: bool) -> Arc<[u8]> {
    post_chat(host, &chat_body(model, PROMPT, stream), stream)
}

/// One POST /v1/chat/completions of `body` (from [`chat_body`]), head and body.
pub(crate) fn post_chat(host: SocketAddr, body: &str, stream: bool) -> Arc<[u8]> {
    let accept = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let text = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nUser-Agent: switchyard-load\r\n\
         Content-Type: application/json\r\nAccept: {accept}\r\nAuthorization: {AUTHORIZATION}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Arc::from(text.into_bytes())
}

/// Whether a 200 body is what the API promises: a completion, or a stream ending `[DONE]`.
pub(crate) fn body_ok(body: &[u8], stream: bool) -> bool {
    if stream {
        body.ends_with(b"data: [DONE]\n\n") && find(body, b"chat.completion.chunk").is_some()
    } else {
        find(body, b"\"chat.completion\"").is_some() && find(body, b"\"choices\"").is_some()
    }
}
