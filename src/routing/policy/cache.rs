//! The decision cache of a deterministic policy: an answer is reused only for the very
//! same facts, matched on the whole key; a 64-bit hash only finds the slot.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
};

use super::{Facts, tables::Answer};
use crate::{config::SecurityLevel, routing::Needs};

/// Most decisions a model's cache holds between stats refreshes.
pub const ENTRIES: usize = 512;

/// What a deterministic policy's answer depends on besides the stats and prices: the
/// survivors and every request fact, with `input_tokens` (itself an estimate) in buckets of
/// ~9% (eight per doubling).
#[derive(Debug, Clone, PartialEq, Eq)]
struct DecisionKey {
    survivors: Vec<usize>,
    tokens: u32,
    max_tokens: Option<u32>,
    stream: bool,
    needs: u8,
    level: SecurityLevel,
    key: Option<String>,
    route_headers: Vec<(String, String)>,
}

impl DecisionKey {
    /// The key of a decision, owned (built only to store an answer).
    fn of(facts: &Facts, survivors: &[usize]) -> DecisionKey {
        DecisionKey {
            survivors: survivors.to_vec(),
            tokens: token_bucket(facts.input_tokens),
            max_tokens: facts.max_tokens,
            stream: facts.stream,
            needs: need_bits(facts.needs),
            level: facts.caller.level,
            key: facts.caller.key.as_ref().map(|k| k.name.clone()),
            route_headers: facts.caller.route_headers.clone(),
        }
    }

    /// Whether `facts` and `survivors` are this key, compared field by field (no copy).
    fn matches(&self, facts: &Facts, survivors: &[usize]) -> bool {
        self.survivors == survivors
            && self.tokens == token_bucket(facts.input_tokens)
            && self.max_tokens == facts.max_tokens
            && self.stream == facts.stream
            && self.needs == need_bits(facts.needs)
            && self.level == facts.caller.level
            && self.key.as_deref() == facts.caller.key.as_ref().map(|k| k.name.as_str())
            && self.route_headers == facts.caller.route_headers
    }
}

fn token_bucket(input_tokens: u32) -> u32 {
    (f64::from(input_tokens.max(1)).log2() * 8.0) as u32
}

fn need_bits(needs: &Needs) -> u8 {
    u8::from(needs.tools)
        | u8::from(needs.parallel_tool_calls) << 1
        | u8::from(needs.json_schema) << 2
        | u8::from(needs.vision) << 3
        | u8::from(needs.streaming) << 4
}

/// The slot of a decision: a hash of everything [`DecisionKey`] holds.
pub fn slot(facts: &Facts, survivors: &[usize]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    survivors.hash(&mut h);
    token_bucket(facts.input_tokens).hash(&mut h);
    facts.max_tokens.hash(&mut h);
    facts.stream.hash(&mut h);
    need_bits(facts.needs).hash(&mut h);
    facts.caller.level.hash(&mut h);
    facts.caller.key.as_ref().map(|k| &k.name).hash(&mut h);
    facts.caller.route_headers.hash(&mut h);
    h.finish()
}

/// Answers by slot, each with the full key it was given for.
#[derive(Default)]
pub struct DecisionCache {
    entries: HashMap<u64, (DecisionKey, Answer)>,
}

impl DecisionCache {
    /// The answer stored at `slot` for exactly these facts; a different key that shares
    /// the slot is a miss.
    pub fn get(&self, slot: u64, facts: &Facts, survivors: &[usize]) -> Option<&Answer> {
        self.entries
            .get(&slot)
            .filter(|(key, _)| key.matches(facts, survivors))
            .map(|(_, answer)| answer)
    }

    /// Stores `answer` at `slot` (replacing whatever shared it), emptying the cache first
    /// when it holds [`ENTRIES`].
    pub fn insert(&mut self, slot: u64, facts: &Facts, survivors: &[usize], answer: Answer) {
        if self.entries.len() >= ENTRIES {
            self.entries.clear();
        }
        self.entries
            .insert(slot, (DecisionKey::of(facts, survivors), answer));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
