//! Fault specs: what a simulated provider should do wrong, from `--fault`, `x-mock-fault`
//! or `PUT /_mock/fault`.

use std::{fmt, time::Duration};

use serde_json::{Value, json};

/// A parsed fault spec such as `status=429,retry_after=2` or `latency_ms=500,cut_after_chunks=3`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fault {
    /// Answer with this status and an OpenAI error body.
    pub status: Option<u16>,
    /// `retry-after` seconds on error answers (429s get 1 unless set).
    pub retry_after: Option<u64>,
    /// Wait this long before the first byte.
    pub latency: Duration,
    /// Drop the connection (TCP reset) instead of answering.
    pub reset: bool,
    /// Streams: reset the connection after this many chunks.
    pub reset_after_chunks: Option<usize>,
    /// Streams: end the body cleanly after this many chunks, without `[DONE]`.
    pub cut_after_chunks: Option<usize>,
    /// Streams: send an in-band `{"error": ...}` event after this many chunks.
    pub error_after_chunks: Option<usize>,
    /// Streams: pause between chunks.
    pub chunk_delay: Duration,
    /// Streams: pause after the opening event (OpenAI's role chunk, which goes out at once
    /// with the headers) before the first content, in place of `chunk_delay`: a model's
    /// time to first token.
    pub first_token: Duration,
    /// Answer 200 with a body that is not valid JSON (or SSE data that is not).
    pub malformed: bool,
    /// Report this usage instead of the estimate, in the format's own fields.
    pub usage: Option<MockUsage>,
    /// Streams (OpenAI format): cut text and tool-call arguments into pieces of this many
    /// characters instead of words, so a test can split a token at every position.
    pub chunk_chars: Option<usize>,
}

/// Usage a mock reports, as OpenAI counts it: `prompt` includes `cached` (read from the
/// cache) and `cache_write` (written to it), `completion` includes `reasoning`. Each
/// format renders it in its own fields (Anthropic's and Bedrock's input exclude the
/// cached and written tokens; Gemini's candidates exclude the thoughts; OpenAI has no
/// cache writes and Cohere no cache, so they drop what they cannot say). Spec:
/// `usage=PROMPT:CACHED:CACHE_WRITE:COMPLETION:REASONING`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MockUsage {
    pub prompt: u64,
    pub cached: u64,
    pub cache_write: u64,
    pub completion: u64,
    pub reasoning: u64,
}

impl MockUsage {
    fn parse(v: &str) -> Result<MockUsage, String> {
        let n: Vec<u64> = v
            .split(':')
            .map(|x| x.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                "`usage` needs PROMPT:CACHED:CACHE_WRITE:COMPLETION:REASONING".to_owned()
            })?;
        let [prompt, cached, cache_write, completion, reasoning] = n[..] else {
            return Err(
                "`usage` needs five numbers, PROMPT:CACHED:CACHE_WRITE:COMPLETION:REASONING".into(),
            );
        };
        if cached + cache_write > prompt || reasoning > completion {
            return Err("`usage`: cached and cache writes are part of the prompt, reasoning of the completion".into());
        }
        Ok(MockUsage {
            prompt,
            cached,
            cache_write,
            completion,
            reasoning,
        })
    }
}

impl fmt::Display for MockUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}:{}",
            self.prompt, self.cached, self.cache_write, self.completion, self.reasoning
        )
    }
}

impl Fault {
    /// Parses `key=value` pairs (and bare `reset`, `malformed`) separated by commas.
    pub fn parse(spec: &str) -> Result<Fault, String> {
        let mut f = Fault::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let num = |v: Option<&str>| -> Result<u64, String> {
                v.ok_or_else(|| format!("`{key}` needs a value"))?
                    .parse::<u64>()
                    .map_err(|_| format!("`{key}` needs a whole number"))
            };
            match key {
                "status" => {
                    let code = num(value)?;
                    if !(100..=599).contains(&code) {
                        return Err(format!("`status={code}` is not an HTTP status"));
                    }
                    f.status = Some(code as u16);
                }
                "retry_after" => f.retry_after = Some(num(value)?),
                "latency_ms" => f.latency = Duration::from_millis(num(value)?),
                "chunk_delay_ms" => f.chunk_delay = Duration::from_millis(num(value)?),
                "first_token_ms" => f.first_token = Duration::from_millis(num(value)?),
                "cut_after_chunks" => f.cut_after_chunks = Some(num(value)? as usize),
                "reset_after_chunks" => f.reset_after_chunks = Some(num(value)? as usize),
                "error_after_chunks" => f.error_after_chunks = Some(num(value)? as usize),
                "chunk_chars" => {
                    f.chunk_chars = Some(usize::try_from(num(value)?.max(1)).unwrap_or(1));
                }
                "reset" => f.reset = true,
                "malformed" => f.malformed = true,
                "usage" => {
                    f.usage = Some(MockUsage::parse(
                        value.ok_or_else(|| "`usage` needs a value".to_owned())?,
                    )?);
                }
                other => {
                    return Err(format!(
                        "unknown fault `{other}`; expected status, retry_after, latency_ms, \
                         reset, reset_after_chunks, cut_after_chunks, error_after_chunks, \
                         chunk_delay_ms, first_token_ms, chunk_chars, malformed or usage"
                    ));
                }
            }
        }
        Ok(f)
    }

    /// The fault as the JSON `/_mock/fault` answers: the spec in its canonical form and each
    /// field.
    pub fn to_json(&self) -> Value {
        json!({
            "spec": self.to_string(),
            "status": self.status,
            "retry_after": self.retry_after,
            "latency_ms": millis(self.latency),
            "reset": self.reset,
            "reset_after_chunks": self.reset_after_chunks,
            "cut_after_chunks": self.cut_after_chunks,
            "error_after_chunks": self.error_after_chunks,
            "chunk_delay_ms": millis(self.chunk_delay),
            "first_token_ms": millis(self.first_token),
            "malformed": self.malformed,
            "usage": self.usage.map(|u| u.to_string()),
            "chunk_chars": self.chunk_chars,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The canonical spec: every key that differs from no fault, in a fixed order, so that
/// `Fault::parse(&f.to_string()) == Ok(f)`; empty for no fault.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut item = |f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>| {
            let written = write!(f, "{sep}{args}");
            sep = ",";
            written
        };
        if let Some(code) = self.status {
            item(f, format_args!("status={code}"))?;
        }
        if let Some(secs) = self.retry_after {
            item(f, format_args!("retry_after={secs}"))?;
        }
        if !self.latency.is_zero() {
            item(f, format_args!("latency_ms={}", millis(self.latency)))?;
        }
        if self.reset {
            item(f, format_args!("reset"))?;
        }
        if let Some(n) = self.reset_after_chunks {
            item(f, format_args!("reset_after_chunks={n}"))?;
        }
        if let Some(n) = self.cut_after_chunks {
            item(f, format_args!("cut_after_chunks={n}"))?;
        }
        if let Some(n) = self.error_after_chunks {
            item(f, format_args!("error_after_chunks={n}"))?;
        }
        if !self.chunk_delay.is_zero() {
            item(
                f,
                format_args!("chunk_delay_ms={}", millis(self.chunk_delay)),
            )?;
        }
        if !self.first_token.is_zero() {
            item(
                f,
                format_args!("first_token_ms={}", millis(self.first_token)),
            )?;
        }
        if self.malformed {
            item(f, format_args!("malformed"))?;
        }
        if let Some(u) = self.usage {
            item(f, format_args!("usage={u}"))?;
        }
        if let Some(n) = self.chunk_chars {
            item(f, format_args!("chunk_chars={n}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let f = Fault::parse(
            "status=429, retry_after=3,latency_ms=20,reset,cut_after_chunks=2,\
             reset_after_chunks=4,error_after_chunks=5,chunk_delay_ms=7,first_token_ms=9,malformed",
        )
        .unwrap();
        assert_eq!(f.status, Some(429));
        assert_eq!(f.retry_after, Some(3));
        assert_eq!(f.latency, Duration::from_millis(20));
        assert!(f.reset && f.malformed);
        assert_eq!(f.cut_after_chunks, Some(2));
        assert_eq!(f.reset_after_chunks, Some(4));
        assert_eq!(f.error_after_chunks, Some(5));
        assert_eq!(f.chunk_delay, Duration::from_millis(7));
        assert_eq!(f.first_token, Duration::from_millis(9));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_numbers() {
        assert!(
            Fault::parse("explode")
                .unwrap_err()
                .contains("unknown fault")
        );
        assert!(Fault::parse("status=abc").is_err());
        assert!(Fault::parse("status=999").is_err());
        assert_eq!(Fault::parse("").unwrap(), Fault::default());
    }

    #[test]
    fn the_canonical_spec_parses_back_to_the_same_fault() {
        for spec in [
            "",
            "status=429,retry_after=2",
            "latency_ms=500,cut_after_chunks=3",
            "status=503,retry_after=1,latency_ms=20,reset,reset_after_chunks=4,\
             cut_after_chunks=2,error_after_chunks=5,chunk_delay_ms=7,first_token_ms=9,malformed",
            "chunk_delay_ms=2,first_token_ms=50",
            "usage=1000:200:300:50:20",
        ] {
            let fault = Fault::parse(spec).unwrap();
            assert_eq!(fault.to_string(), spec.replace(' ', ""));
            assert_eq!(Fault::parse(&fault.to_string()).unwrap(), fault);
        }
        let json = Fault::parse(" latency_ms=250 , status=503")
            .unwrap()
            .to_json();
        assert_eq!(json["spec"], "status=503,latency_ms=250");
        assert_eq!(json["latency_ms"], 250);
        assert_eq!(json["reset"], false);
    }
}
