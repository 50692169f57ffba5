//! The PII detectors: one linear-time scan for every enabled detector, then each candidate
//! checked by its detector's own rule (Luhn, IBAN mod 97, octet ranges, entropy).
//!
//! The scan is one `regex` alternation (lazy DFA, ASCII word boundaries so that non-ASCII
//! text stays on the fast engine), ordered by priority: at one start position the first
//! detector whose shape matches wins. A candidate its detector's check refuses (a
//! Luhn-invalid card number, an IBAN with a bad checksum) is left alone as a whole: the
//! scan resumes after it, so no sub-span of a refused number is redacted by another
//! detector by accident.

use regex::Regex;

/// One kind of personal or secret data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    Secret,
    Email,
    Card,
    Iban,
    Ssn,
    Ip,
    Phone,
}

impl Detector {
    /// Every detector, in scan priority.
    pub const ALL: [Detector; 7] = [
        Detector::Secret,
        Detector::Email,
        Detector::Card,
        Detector::Iban,
        Detector::Ssn,
        Detector::Ip,
        Detector::Phone,
    ];

    /// The config name (`detectors = [...]`), also the metric and log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Secret => "secret",
            Detector::Email => "email",
            Detector::Card => "card",
            Detector::Iban => "iban",
            Detector::Ssn => "ssn",
            Detector::Ip => "ip",
            Detector::Phone => "phone",
        }
    }

    /// The placeholder's label (`<EMAIL_1>`).
    pub fn tag(self) -> &'static str {
        match self {
            Detector::Secret => "SECRET",
            Detector::Email => "EMAIL",
            Detector::Card => "CARD",
            Detector::Iban => "IBAN",
            Detector::Ssn => "SSN",
            Detector::Ip => "IP",
            Detector::Phone => "PHONE",
        }
    }

    /// Parses a config name.
    pub fn parse(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// The detector whose placeholder label is `tag`.
    pub fn from_tag(tag: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.tag() == tag)
    }

    /// The shapes this detector looks for (alternatives of the scan, in order).
    fn shapes(self) -> &'static [&'static str] {
        match self {
            // Known prefixes first, then any long token (checked for entropy).
            Detector::Secret => &[
                r"(?-u:\b)sk-ant-[A-Za-z0-9_\-]{20,}",
                r"(?-u:\b)sk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{20,}",
                r"(?-u:\b)AKIA[0-9A-Z]{16}",
                r"(?-u:\b)ghp_[A-Za-z0-9]{36}",
                r"(?-u:\b)github_pat_[A-Za-z0-9_]{22,}",
                r"(?-u:\b)xox[abposr]-[A-Za-z0-9\-]{10,}",
                r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}",
                r"(?-u:\b)[A-Za-z0-9+/_\-]{32,}={0,2}",
            ],
            Detector::Email => &[r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,}"],
            Detector::Card => &[r"(?-u:\b)[0-9](?:[ \-]?[0-9]){12,18}(?-u:\b)"],
            Detector::Iban => &[r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)"],
            Detector::Ssn => &[r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)"],
            Detector::Ip => &[
                r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)",
                r"(?:(?-u:\b)[0-9A-Fa-f]{1,4}|:)(?::[0-9A-Fa-f]{0,4}){1,7}",
            ],
            Detector::Phone => &[
                r"\+[0-9]{1,3}[ .\-]?(?:\([0-9]{1,4}\)[ .\-]?)?[0-9]{1,4}(?:[ .\-]?[0-9]{2,4}){1,5}(?-u:\b)",
                r"(?:\([0-9]{2,4}\) ?|(?-u:\b)[0-9]{2,4}[ .\-])[0-9]{2,4}(?:[ .\-][0-9]{2,5}){1,3}(?-u:\b)",
            ],
        }
    }

    /// Whether a match of this detector can start with byte `b` (skips hopeless shapes
    /// when classifying a candidate).
    fn may_start(self, b: u8) -> bool {
        match self {
            Detector::Secret => b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-'),
            Detector::Email => {
                !b.is_ascii()
                    || b.is_ascii_alphanumeric()
                    || matches!(b, b'.' | b'%' | b'+' | b'-' | b'_')
            }
            Detector::Card | Detector::Ssn => b.is_ascii_digit(),
            Detector::Iban => b.is_ascii_uppercase(),
            Detector::Ip => b.is_ascii_hexdigit() || b == b':',
            Detector::Phone => b.is_ascii_digit() || matches!(b, b'+' | b'('),
        }
    }

    /// Whether a candidate of this detector's shape really is one.
    fn accepts(self, text: &str) -> bool {
        match self {
            Detector::Secret => secret(text),
            Detector::Email => true,
            Detector::Card => luhn(text),
            Detector::Iban => iban(text),
            Detector::Ssn => ssn(text),
            Detector::Ip => ip(text),
            Detector::Phone => phone(text),
        }
    }
}

/// The scan for one set of detectors, compiled once per config load.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Every enabled detector's shapes, one pattern each in priority order: a match says
    /// which detector's shape matched first at its start (leftmost-first, as one
    /// alternation would).
    any: regex_automata::meta::Regex,
    /// The detector of each of `any`'s patterns.
    by_pattern: Vec<Detector>,
    /// Per enabled detector, in priority order, its shapes anchored at the start, to
    /// classify a candidate.
    each: Vec<(Detector, Regex)>,
}

/// One finding: where, and which detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub detector: Detector,
    pub start: usize,
    pub end: usize,
}

impl Scanner {
    /// The scanner for `detectors` (deduplicated, scanned in priority order).
    pub fn new(detectors: &[Detector]) -> Result<Scanner, regex::Error> {
        let mut enabled: Vec<Detector> = detectors.to_vec();
        enabled.sort();
        enabled.dedup();
        let mut patterns = Vec::new();
        let mut each = Vec::new();
        for &d in &enabled {
            let shapes = d.shapes().join("|");
            patterns.push(format!("(?:{shapes})"));
            each.push((d, Regex::new(&format!("^(?:{shapes})"))?));
        }
        // Built like `regex` builds its own (Unicode on, so `\w` is), and an error from it
        // is `regex`'s: the same patterns compiled just above.
        let any = regex_automata::meta::Regex::new_many(&patterns)
            .map_err(|e| regex::Error::Syntax(e.to_string()))?;
        Ok(Scanner {
            any,
            by_pattern: enabled,
            each,
        })
    }

    /// Every finding in `text`, in order, not overlapping.
    pub fn scan(&self, text: &str, out: &mut Vec<Found>) {
        if self.each.is_empty() {
            return;
        }
        let mut at = 0;
        while at < text.len() {
            let input = regex_automata::Input::new(text).range(at..);
            let Some(m) = self.any.search(&input) else {
                break;
            };
            let matched = &text[m.range()];
            // Most candidates are what their shape says: checked at once. One its
            // detector refuses is classified afresh (a lower-priority detector's shape,
            // or a shorter prefix, may still take it).
            let found = match self.by_pattern.get(m.pattern().as_usize()) {
                Some(&detector) if detector.accepts(matched) => Some(Found {
                    detector,
                    start: m.start(),
                    end: m.end(),
                }),
                _ => self.classify(&text[m.start()..], m.start()),
            };
            let next = next_boundary(text, m.start());
            at = match found {
                Some(f) => {
                    out.push(f);
                    f.end.max(next)
                }
                // A rejected token (a path or a hyphenated phrase the long-token shape
                // took, then refused for its entropy) may hide a real finding: look again
                // from its next character. Not inside a rejected run of digits (a number
                // failing Luhn is left alone whole), nor inside a long token, so that a
                // megabyte of base64 costs one pass, not one per character.
                None if matched.len() <= RESCAN_WITHIN
                    && matched.bytes().any(|b| b.is_ascii_alphabetic()) =>
                {
                    next
                }
                None => m.end().max(next),
            };
        }
    }

    /// What starts at `rest` (the text from a candidate's start): the first detector, in
    /// priority order, whose shape matches there and whose check accepts the match. An
    /// IBAN candidate that swallowed a following upper-case word is retried without its
    /// trailing groups.
    fn classify(&self, rest: &str, start: usize) -> Option<Found> {
        let first = rest.as_bytes().first().copied().unwrap_or(0);
        for (d, shape) in &self.each {
            if !d.may_start(first) {
                continue;
            }
            let Some(m) = shape.find(rest) else {
                continue;
            };
            let candidate = m.as_str();
            let found = |len: usize| Found {
                detector: *d,
                start,
                end: start + len,
            };
            if d.accepts(candidate) {
                return Some(found(candidate.len()));
            }
            // A candidate that swallowed what follows (an IBAN a following word, a card
            // number an expiry date): its leading groups alone may pass.
            let separators: &[char] = match d {
                Detector::Iban => &[' '],
                Detector::Card => &[' ', '-'],
                _ => &[],
            };
            let mut cut = candidate;
            while let Some(sep) = cut.rfind(separators) {
                cut = &cut[..sep];
                if d.accepts(cut) {
                    return Some(found(cut.len()));
                }
            }
        }
        None
    }
}

/// The longest rejected candidate that is searched again from inside (see [`Scanner::scan`]).
const RESCAN_WITHIN: usize = 256;

fn next_boundary(text: &str, from: usize) -> usize {
    let mut i = from + 1;
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The Luhn checksum over the digits (separators ignored), 13 to 19 digits.
pub fn luhn(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616: 15 to 34 characters, the check digits valid under mod 97.
pub fn iban(text: &str) -> bool {
    let compact: Vec<u8> = text.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &b in tail.iter().chain(head) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if value >= 10 {
            (rem * 100 + value) % 97
        } else {
            (rem * 10 + value) % 97
        };
    }
    rem == 1
}

/// A US SSN as the SSA issues them: no area 000, 666 or 9xx, no group 00, no serial 0000.
fn ssn(text: &str) -> bool {
    let mut parts = text.split('-');
    let (Some(area), Some(group), Some(serial)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// An IPv4 address with every octet at most 255, or an IPv6 address std parses.
fn ip(text: &str) -> bool {
    if text.contains(':') {
        text.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        text.parse::<std::net::Ipv4Addr>().is_ok()
    }
}

/// 7 to 15 digits (E.164); not an ISO date.
fn phone(text: &str) -> bool {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return false;
    }
    let b = text.as_bytes();
    let date = b.len() == 10 && b[4] == b'-' && b[7] == b'-';
    !date && (text.starts_with('+') || digits >= 9)
}

/// A secret: a known provider prefix, or a long token random enough (Shannon entropy of
/// at least 4 bits a character over mixed case and digits) to be a credential rather
/// than a word, an identifier or a hex digest.
fn secret(text: &str) -> bool {
    const PREFIXES: [&str; 8] = [
        "sk-",
        "AKIA",
        "ghp_",
        "github_pat_",
        "xoxa-",
        "xoxb-",
        "xoxp-",
        "AIza",
    ];
    if PREFIXES.iter().any(|p| text.starts_with(p))
        || text.starts_with("xox") && text.as_bytes().get(4) == Some(&b'-')
    {
        return true;
    }
    let has = |f: fn(&u8) -> bool| text.as_bytes().iter().any(f);
    has(u8::is_ascii_digit)
        && has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_lowercase)
        && entropy(text) >= 4.0
}

/// Shannon entropy in bits per byte.
pub fn entropy(text: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in text.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = text.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests;
