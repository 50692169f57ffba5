//! Restore: the originals put back in place of this request's placeholders, in a whole
//! text or in a stream of pieces where a placeholder may be split anywhere.
//!
//! A placeholder is `<`, upper-case letters, `_`, hex digits, `>`; it never contains
//! another `<`. So a stream piece can be passed on up to its last `<` that could still
//! open a placeholder (at most [`MAX_PLACEHOLDER`] characters from its end and followed
//! only by what a placeholder may hold so far); only that tail is held back, and flushed
//! at the end. Restoring the pieces one by one gives exactly the restore of the whole.

use std::collections::HashMap;

/// The longest placeholder: `<SECRET_` + 12 hex digits + `>` is 21; a mask counter has at
/// most 10 digits.
pub const MAX_PLACEHOLDER: usize = 24;

/// One request's placeholders and the originals they stand for.
#[derive(Debug)]
pub struct Originals {
    map: HashMap<String, String>,
}

/// Where a restored text goes: prose, or inside a JSON string (tool-call arguments),
/// where the original is written JSON-escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Text,
    JsonString,
}

impl Originals {
    pub fn new(map: HashMap<String, String>) -> Originals {
        Originals { map }
    }

    /// `text` with every known placeholder replaced; `None` when there was none.
    pub fn restore(&self, text: &str, into: Target) -> Option<String> {
        let mut out: Option<String> = None;
        let mut copied = 0;
        let mut search = 0;
        while let Some(open) = text[search..].find('<').map(|i| i + search) {
            let Some(len) = placeholder_len(&text[open..]) else {
                search = open + 1;
                continue;
            };
            let candidate = &text[open..open + len];
            if let Some(original) = self.map.get(candidate) {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
                o.push_str(&text[copied..open]);
                match into {
                    Target::Text => o.push_str(original),
                    Target::JsonString => {
                        let quoted = serde_json::Value::from(original.as_str()).to_string();
                        o.push_str(&quoted[1..quoted.len() - 1]);
                    }
                }
                copied = open + len;
            }
            search = open + len;
        }
        out.map(|mut o| {
            o.push_str(&text[copied..]);
            o
        })
    }

    /// `text` restored, or as it was.
    pub fn restored(&self, text: String, into: Target) -> String {
        self.restore(&text, into).unwrap_or(text)
    }
}

/// The length of the complete placeholder `s` starts with, if it starts with one.
fn placeholder_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() && b[i].is_ascii_uppercase() {
        i += 1;
    }
    if i == 1 || b.get(i) != Some(&b'_') {
        return None;
    }
    i += 1;
    let digits = i;
    while i < b.len() && b[i].is_ascii_hexdigit() && !b[i].is_ascii_uppercase() {
        i += 1;
    }
    (i > digits && b.get(i) == Some(&b'>') && i < MAX_PLACEHOLDER).then_some(i + 1)
}

/// Whether `s` (starting with `<`) could still grow into a placeholder.
fn could_open(s: &str) -> bool {
    if s.len() >= MAX_PLACEHOLDER {
        return false;
    }
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() && b[i].is_ascii_uppercase() {
        i += 1;
    }
    if i == b.len() {
        return true;
    }
    if i == 1 || b[i] != b'_' {
        return false;
    }
    i += 1;
    while i < b.len() && b[i].is_ascii_hexdigit() && !b[i].is_ascii_uppercase() {
        i += 1;
    }
    i == b.len()
}

/// Restores a text that arrives in pieces.
#[derive(Debug)]
pub struct Restorer {
    held: String,
    into: Target,
}

impl Restorer {
    pub fn new(into: Target) -> Restorer {
        Restorer {
            held: String::new(),
            into,
        }
    }

    /// What can be passed on after `piece`: everything but a tail that may be the start of
    /// a placeholder.
    pub fn push(&mut self, originals: &Originals, piece: &str) -> String {
        let mut text = std::mem::take(&mut self.held);
        text.push_str(piece);
        let mut from = text.len().saturating_sub(MAX_PLACEHOLDER);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        let cut = text[from..]
            .char_indices()
            .filter(|(_, c)| *c == '<')
            .map(|(i, _)| from + i)
            .find(|&i| could_open(&text[i..]));
        if let Some(cut) = cut {
            self.held = text[cut..].to_owned();
            text.truncate(cut);
        }
        originals.restored(text, self.into)
    }

    /// Whether a tail is held back.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// The held tail, restored (the stream ended).
    pub fn finish(&mut self, originals: &Originals) -> String {
        originals.restored(std::mem::take(&mut self.held), self.into)
    }
}
