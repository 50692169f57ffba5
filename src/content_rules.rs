//! Content rules: named regexes and word lists checked on prompts and answers; a `block`
//! refuses (400 `content_policy_violation`, naming the rule and never the matched text),
//! a `flag` lets the text through and is recorded.
//!
//! Every rule's patterns compile at config load into one [`RegexSet`] per direction, under
//! a compiled-size limit: the `regex` crate matches in time linear in the text, so no
//! pattern and no input can stall a request. A streamed answer is checked in windows:
//! each new piece together with the last [`OVERLAP`] bytes before it, so a match split
//! across chunks is caught when its last piece arrives, before that piece is sent.

use std::sync::Arc;

use regex::{RegexBuilder, RegexSet, RegexSetBuilder};

use crate::error::Error;

/// Bytes of earlier text each streamed window includes: a match longer than this that is
/// split across chunks can be missed (a whole answer, or a prompt, is checked whole).
pub const OVERLAP: usize = 1024;

/// The compiled size one rule's patterns may take; a pattern over it is a config error.
const SIZE_LIMIT: usize = 2 << 20;

/// Where a rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Prompt,
    Response,
    Both,
}

/// What a rule does on a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Block,
    Flag,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Flag => "flag",
        }
    }
}

/// Which side of the call a text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Prompt,
    Response,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Prompt => "prompt",
            Side::Response => "response",
        }
    }
}

/// One rule as configured.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: Arc<str>,
    pub patterns: Vec<String>,
    pub words: Vec<String>,
    pub on: On,
    pub action: Action,
}

/// A rule that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule: Arc<str>,
    pub action: Action,
    pub side: Side,
}

impl Hit {
    /// The caller's error for a block.
    pub fn refusal(&self) -> Error {
        Error::Refused {
            message: format!(
                "the {} was refused by content rule `{}`",
                self.side.as_str(),
                self.rule
            ),
            code: "content_policy_violation",
        }
    }
}

/// The rules of one side, compiled.
#[derive(Debug, Clone)]
pub struct RuleSet {
    side: Side,
    set: RegexSet,
    /// Pattern index to rule index.
    owner: Vec<usize>,
    rules: Vec<(Arc<str>, Action)>,
}

/// Every configured rule, by side.
#[derive(Debug, Clone, Default)]
pub struct ContentRules {
    pub prompt: Option<Arc<RuleSet>>,
    pub response: Option<Arc<RuleSet>>,
}

impl ContentRules {
    /// Compiles `specs`; the error names the rule's index.
    /// Compiles `specs`. An error names the rule at fault (its index), or none when each
    /// rule compiles alone but one side's rules together are over the size limit.
    pub fn new(specs: Vec<RuleSpec>) -> Result<ContentRules, (Option<usize>, String)> {
        let mut compiled = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            let mut patterns = Vec::with_capacity(s.patterns.len() + s.words.len());
            for p in &s.patterns {
                RegexBuilder::new(p)
                    .size_limit(SIZE_LIMIT)
                    .build()
                    .map_err(|e| (Some(i), format!("`{p}`: {e}")))?;
                patterns.push(p.clone());
            }
            for w in s.words.iter().map(|w| w.trim()).filter(|w| !w.is_empty()) {
                let escaped = regex::escape(w);
                // ASCII word boundaries keep the scan on the fast engine; a word that does
                // not start or end with a word character cannot use them.
                let edge = |c: Option<char>| {
                    if c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                        r"(?-u:\b)"
                    } else {
                        ""
                    }
                };
                patterns.push(format!(
                    "(?i){}{escaped}{}",
                    edge(w.chars().next()),
                    edge(w.chars().last())
                ));
            }
            compiled.push((i, patterns));
        }
        let side = |side: Side| -> Result<Option<Arc<RuleSet>>, (Option<usize>, String)> {
            let mut patterns = Vec::new();
            let mut owner = Vec::new();
            let mut rules = Vec::new();
            for (i, ps) in &compiled {
                let s = &specs[*i];
                let applies = matches!(
                    (s.on, side),
                    (On::Both, _) | (On::Prompt, Side::Prompt) | (On::Response, Side::Response)
                );
                if !applies {
                    continue;
                }
                for p in ps {
                    patterns.push(p.clone());
                    owner.push(rules.len());
                }
                rules.push((s.name.clone(), s.action));
            }
            if rules.is_empty() {
                return Ok(None);
            }
            let set = RegexSetBuilder::new(&patterns)
                .size_limit(SIZE_LIMIT.saturating_mul(specs.len().max(1)))
                .build()
                .map_err(|e| {
                    (
                        None,
                        format!(
                            "the {} rules' patterns together: {e}",
                            match side {
                                Side::Prompt => "prompt",
                                Side::Response => "response",
                            }
                        ),
                    )
                })?;
            Ok(Some(Arc::new(RuleSet {
                side,
                set,
                owner,
                rules,
            })))
        };
        Ok(ContentRules {
            prompt: side(Side::Prompt)?,
            response: side(Side::Response)?,
        })
    }

    pub fn any(&self) -> bool {
        self.prompt.is_some() || self.response.is_some()
    }
}

impl RuleSet {
    /// The rules matching `text`, each once, in config order, added to `hits` unless
    /// already there.
    pub fn check(&self, text: &str, hits: &mut Vec<Hit>) {
        if !self.set.is_match(text) {
            return;
        }
        let mut seen = vec![false; self.rules.len()];
        for p in self.set.matches(text).iter() {
            seen[self.owner[p]] = true;
        }
        for (r, (name, action)) in self.rules.iter().enumerate() {
            if seen[r] && !hits.iter().any(|h| h.rule == *name && h.side == self.side) {
                hits.push(Hit {
                    rule: name.clone(),
                    action: *action,
                    side: self.side,
                });
            }
        }
    }
}

/// The first blocking hit, if any.
pub fn blocked(hits: &[Hit]) -> Option<&Hit> {
    hits.iter().find(|h| h.action == Action::Block)
}

/// A streamed text checked window by window.
#[derive(Debug, Default)]
pub struct Window {
    tail: String,
}

/// Appended to a window that is not the text's end, so that `\b` and `$` do not match at
/// the window's edge: `bomb` then `ardier` is not the word `bomb`. A word character (for
/// the ASCII `\b` of word rules) that rules are unlikely to end with.
const NOT_THE_END: char = '_';

impl Window {
    /// Checks `piece` with the overlap before it; keeps the new overlap. More text may
    /// follow, so a match that needs the text to end there (a word's trailing boundary,
    /// `$`) is decided with the next piece, or by [`Window::check_last`].
    pub fn check(&mut self, rules: &RuleSet, piece: &str, hits: &mut Vec<Hit>) {
        if piece.is_empty() {
            return;
        }
        self.tail.push_str(piece);
        self.tail.push(NOT_THE_END);
        rules.check(&self.tail, hits);
        self.tail.pop();
        self.trim();
    }

    /// Checks the last `piece` (possibly empty) and the text's end.
    pub fn check_last(&mut self, rules: &RuleSet, piece: &str, hits: &mut Vec<Hit>) {
        self.tail.push_str(piece);
        if !self.tail.is_empty() {
            rules.check(&self.tail, hits);
        }
        self.trim();
    }

    fn trim(&mut self) {
        if self.tail.len() > OVERLAP {
            let mut from = self.tail.len() - OVERLAP;
            while !self.tail.is_char_boundary(from) {
                from += 1;
            }
            self.tail.drain(..from);
        }
    }
}

#[cfg(test)]
mod tests;
