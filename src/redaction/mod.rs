//! PII redaction: a [`Policy`] (detectors, mode, restore) rewrites every text of a request
//! before it leaves for a provider, and a [`Session`] remembers, for that one request,
//! which placeholder stands for which original so the answer can get them back
//! ([`restore`], also across stream chunks).
//!
//! Placeholders are `<TAG_N>` in `mask` mode (numbered per detector in order of first
//! appearance, the same value always the same placeholder within a request) and
//! `<TAG_HEX>` in `hash` mode (the first 12 hex digits of HMAC-SHA256 under
//! `redaction.hash_key` of the detector and value: stable across requests, replicas with
//! the same key, and restarts when the key is configured).

mod detect;
pub mod restore;

use std::{collections::HashMap, sync::Arc};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use detect::{Detector, Found, Scanner, entropy, iban, luhn};

use crate::{
    chat::{ChatRequest, Content, ContentPart},
    error::Error,
};

/// What a policy does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `<EMAIL_1>`.
    Mask,
    /// `<EMAIL_3fa2c49b01de>`.
    Hash,
    /// Refuse the request (400 `pii_detected`, naming the detector).
    Block,
}

/// One redaction profile, compiled.
pub struct Policy {
    /// The profile's name (`gateway`, a profile's or a key's).
    pub name: Arc<str>,
    scanner: Scanner,
    pub mode: Mode,
    /// Whether answers get the originals back.
    pub restore: bool,
    hash_key: Arc<[u8]>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("restore", &self.restore)
            .finish_non_exhaustive()
    }
}

impl Policy {
    pub fn new(
        name: &str,
        detectors: &[Detector],
        mode: Mode,
        restore: bool,
        hash_key: Arc<[u8]>,
    ) -> Result<Policy, regex::Error> {
        Ok(Policy {
            name: Arc::from(name),
            scanner: Scanner::new(detectors)?,
            mode,
            restore,
            hash_key,
        })
    }

    /// Redacts one text in place, noting each finding in `session`. In `block` mode the
    /// first finding refuses the request.
    pub fn redact_text(&self, text: &mut String, session: &mut Session) -> Result<(), Error> {
        let found = &mut session.scratch;
        found.clear();
        self.scanner.scan(text, found);
        if found.is_empty() {
            return Ok(());
        }
        if self.mode == Mode::Block {
            let d = found[0].detector;
            session.count(d);
            return Err(Error::Refused {
                message: format!(
                    "the request contains data the `{}` detector protects; it was not sent \
                     to any provider",
                    d.as_str()
                ),
                code: "pii_detected",
            });
        }
        let found = std::mem::take(&mut session.scratch);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in &found {
            out.push_str(&text[at..f.start]);
            let placeholder = session.placeholder(self, f.detector, &text[f.start..f.end]);
            out.push_str(&placeholder);
            at = f.end;
        }
        out.push_str(&text[at..]);
        *text = out;
        session.scratch = found;
        Ok(())
    }

    /// Redacts every text of `request` a provider sees: message text and text parts
    /// (system, developer, user, assistant and tool messages: tool results included),
    /// tool-call arguments, refusals.
    pub fn redact(&self, request: &mut ChatRequest, session: &mut Session) -> Result<(), Error> {
        for m in &mut request.messages {
            match &mut m.content {
                Some(Content::Text(t)) => self.redact_text(t, session)?,
                Some(Content::Parts(parts)) => {
                    for p in parts {
                        if let ContentPart::Text { text, .. } = p {
                            self.redact_text(text, session)?;
                        }
                    }
                }
                None => {}
            }
            if let Some(calls) = &mut m.tool_calls {
                for c in calls {
                    self.redact_text(&mut c.function.arguments, session)?;
                }
            }
            if let Some(r) = &mut m.refusal {
                self.redact_text(r, session)?;
            }
        }
        Ok(())
    }

    fn hashed(&self, d: Detector, value: &str) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.hash_key) {
            Ok(m) => m,
            // HMAC takes keys of any length.
            Err(_) => return format!("<{}_0>", d.tag()),
        };
        mac.update(d.tag().as_bytes());
        mac.update(b":");
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("<{}_{}>", d.tag(), hex::encode(&digest[..6]))
    }
}

/// One request's redactions: placeholder to original (for restore) and what each
/// detector found (for the audit).
#[derive(Debug, Default)]
pub struct Session {
    /// Original to placeholder: the same value gets the same placeholder.
    by_value: HashMap<String, String>,
    /// Placeholder to original, kept only when answers are restored.
    originals: HashMap<String, String>,
    /// Per detector: placeholders minted so far (mask numbering) and findings (audit).
    minted: [u32; Detector::ALL.len()],
    counts: [u32; Detector::ALL.len()],
    restore: bool,
    scratch: Vec<Found>,
}

impl Session {
    pub fn new(restore: bool) -> Session {
        Session {
            restore,
            ..Session::default()
        }
    }

    fn count(&mut self, d: Detector) {
        self.counts[d as usize] += 1;
    }

    fn placeholder(&mut self, policy: &Policy, d: Detector, value: &str) -> String {
        self.count(d);
        if let Some(p) = self.by_value.get(value) {
            return p.clone();
        }
        let p = match policy.mode {
            Mode::Hash => policy.hashed(d, value),
            Mode::Mask | Mode::Block => {
                let n = &mut self.minted[d as usize];
                *n += 1;
                format!("<{}_{}>", d.tag(), n)
            }
        };
        self.by_value.insert(value.to_owned(), p.clone());
        if self.restore {
            self.originals.insert(p.clone(), value.to_owned());
        }
        p
    }

    /// Findings per detector, in detector order, those with none left out.
    pub fn counts(&self) -> impl Iterator<Item = (Detector, u32)> + '_ {
        Detector::ALL
            .into_iter()
            .map(|d| (d, self.counts[d as usize]))
            .filter(|(_, n)| *n > 0)
    }

    /// Whether anything was redacted.
    pub fn any(&self) -> bool {
        self.counts.iter().any(|n| *n > 0)
    }

    /// The originals, when the answer is to get them back and there is anything to give.
    pub fn into_restore(self) -> Option<Arc<restore::Originals>> {
        (self.restore && !self.originals.is_empty())
            .then(|| Arc::new(restore::Originals::new(self.originals)))
    }
}

#[cfg(test)]
mod tests;
