//! `[responses]`: the bounds of the Responses API's store of responses
//! (`previous_response_id`, `GET /v1/responses/{id}`).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `[responses]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsesFile {
    /// The most responses kept in process (oldest and least used go first).
    pub max_stored: Option<u64>,
    /// The most bytes of stored responses kept in process.
    pub max_bytes: Option<u64>,
    /// How long a stored response is kept, in seconds (in process and in Redis).
    pub ttl_s: Option<u64>,
}

/// `[responses]`, validated. Read at start: a reload does not resize the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsesConfig {
    pub max_stored: u64,
    pub max_bytes: u64,
    pub ttl: Duration,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig {
            max_stored: 10_000,
            max_bytes: 256 << 20,
            // OpenAI keeps stored responses for 30 days.
            ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Validates `[responses]`.
pub fn responses_config(file: &ResponsesFile) -> Result<ResponsesConfig, ConfigError> {
    let default = ResponsesConfig::default();
    let positive = |key: &str, v: Option<u64>, or: u64| match v {
        Some(0) => Err(ConfigError::new(
            format!("responses.{key}"),
            "must be at least 1",
        )),
        Some(v) => Ok(v),
        None => Ok(or),
    };
    Ok(ResponsesConfig {
        max_stored: positive("max_stored", file.max_stored, default.max_stored)?,
        max_bytes: positive("max_bytes", file.max_bytes, default.max_bytes)?,
        ttl: Duration::from_secs(positive("ttl_s", file.ttl_s, default.ttl.as_secs())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_is_absent_and_zero_is_refused() {
        let c = responses_config(&ResponsesFile {
            ttl_s: Some(60),
            ..ResponsesFile::default()
        })
        .unwrap();
        assert_eq!(c.ttl, Duration::from_secs(60));
        assert_eq!(c.max_stored, ResponsesConfig::default().max_stored);
        let e = responses_config(&ResponsesFile {
            max_stored: Some(0),
            ..ResponsesFile::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("responses.max_stored"), "{e}");
        assert!(crate::config::Config::parse("[responses]\nmax_bytes = 0\n").is_err());
        assert!(crate::config::Config::parse("[responses]\nttl = 1\n").is_err());
    }
}
