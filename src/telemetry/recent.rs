//! Bounded, newest-first histories for the status page: recent errors, alerts and reloads.
//!
//! Each is written only off the success path (a refusal, an alert, a reload) and read by
//! `GET /status/data`; a push takes one short lock and never allocates past the bound.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
};

use serde::Serialize;

/// Errors kept for the status page.
pub const ERRORS_KEPT: usize = 50;
/// Alerts kept (each kind and subject once, with a count).
pub const ALERTS_KEPT: usize = 50;
/// Reloads kept.
pub const RELOADS_KEPT: usize = 20;
/// An error's message is cut to this many characters.
pub const MESSAGE_CHARS: usize = 300;

/// The last `cap` items pushed, newest first.
pub struct Recent<T> {
    cap: usize,
    items: Mutex<VecDeque<T>>,
}

impl<T: Clone> Recent<T> {
    pub fn new(cap: usize) -> Recent<T> {
        Recent {
            cap,
            items: Mutex::new(VecDeque::with_capacity(cap)),
        }
    }

    /// Adds `item` as the newest; the oldest goes when the history is full.
    pub fn push(&self, item: T) {
        self.update(|items| {
            items.push_front(item);
        });
    }

    /// Runs `change` on the items (newest first), then drops the oldest past the bound.
    pub fn update(&self, change: impl FnOnce(&mut VecDeque<T>)) {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut items);
        items.truncate(self.cap);
    }

    /// A copy of the items, newest first.
    pub fn list(&self) -> Vec<T> {
        let items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        items.iter().cloned().collect()
    }
}

/// One request that ended in an error, as the status page lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecentError {
    /// Unix seconds.
    pub at: u64,
    pub request_id: String,
    /// The catalog's name for the model, or `unknown`.
    pub model: String,
    /// The caller key's name; `None` for anonymous calls.
    pub key: Option<String>,
    /// The HTTP status the caller got.
    pub status: u16,
    /// The OpenAI error `type` the caller got.
    #[serde(rename = "type")]
    pub kind: String,
    /// The message the caller got, cut to [`MESSAGE_CHARS`].
    pub message: String,
    /// The attempts, as `x-switchyard-attempts` lists them (empty when none were made).
    pub attempts: String,
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_up_to_the_bound() {
        let r = Recent::new(3);
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.list(), vec![4, 3, 2]);
    }

    #[test]
    fn cuts_long_text_on_a_character_boundary() {
        assert_eq!(cut("héllo", 2), "hé…");
        assert_eq!(cut("hi", 2), "hi");
    }
}
