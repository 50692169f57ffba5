//! `[redaction]`, `[[content_rules]]`, `[[keys]] redaction` and `[[models]] guard`: the
//! data controls as written, and validated into [`DataConfig`] (detectors and rule
//! regexes compiled once, here).

use std::{collections::BTreeMap, sync::Arc};

use serde::Deserialize;

use super::{ConfigError, FileConfig, Secret, SecurityLevel};
use crate::{
    content_rules::{Action, ContentRules, On, RuleSpec},
    redaction::{Detector, Mode, Policy},
};

/// `[redaction]` as written: the gateway's own settings, named profiles, and the profile
/// each security level uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionFile {
    /// The gateway-wide profile's detectors; none: no gateway-wide redaction.
    #[serde(default)]
    pub detectors: Vec<String>,
    pub mode: Option<String>,
    pub restore: Option<bool>,
    /// The key of `hash` placeholders (`env:NAME` or a literal); default: one random key
    /// per process.
    pub hash_key: Option<String>,
    /// Named profiles, for keys and levels to use.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileFile>,
    /// Security level (`low`, `medium`, `high`) to profile name (or `off`).
    #[serde(default)]
    pub levels: BTreeMap<String, String>,
}

/// One redaction profile as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub detectors: Vec<String>,
    pub mode: Option<String>,
    pub restore: Option<bool>,
}

/// `[[keys]] redaction`: a profile's name (or `off`), or a profile inline.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KeyRedactionFile {
    Named(String),
    Inline(ProfileFile),
}

/// `[[content_rules]]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentRuleFile {
    pub name: String,
    /// Regular expressions (the `regex` crate's syntax, linear time).
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Whole words or phrases, matched case-insensitively.
    #[serde(default)]
    pub words: Vec<String>,
    /// `prompt`, `response` or `both` (default `both`).
    pub on: Option<String>,
    /// `block` or `flag` (default `block`).
    pub action: Option<String>,
}

/// What applies to one caller: its key's choice, else its level's, else the gateway's.
#[derive(Debug, Clone, Default)]
pub enum RedactionChoice {
    /// Not set here: ask the next, less specific scope.
    #[default]
    Inherit,
    /// Set to no redaction.
    Off,
    On(Arc<Policy>),
}

/// The data controls, validated.
#[derive(Debug, Clone, Default)]
pub struct DataConfig {
    pub gateway: Option<Arc<Policy>>,
    pub levels: [RedactionChoice; 3],
    /// Key name to its choice (only keys that set one).
    pub keys: BTreeMap<String, RedactionChoice>,
    pub rules: Arc<ContentRules>,
    /// Model name to its guard script's name.
    pub guards: BTreeMap<String, String>,
}

impl DataConfig {
    /// The redaction that applies to a caller with `key` at `level`: the most specific
    /// scope that says anything.
    pub fn redaction(&self, key: Option<&str>, level: SecurityLevel) -> Option<&Arc<Policy>> {
        let by_key = key.and_then(|k| self.keys.get(k));
        let by_level = &self.levels[level as usize];
        for choice in by_key.into_iter().chain([by_level]) {
            match choice {
                RedactionChoice::Inherit => continue,
                RedactionChoice::Off => return None,
                RedactionChoice::On(p) => return Some(p),
            }
        }
        self.gateway.as_ref()
    }

    /// Whether any redaction is configured at all.
    pub fn redacts(&self) -> bool {
        self.gateway.is_some()
            || self
                .levels
                .iter()
                .chain(self.keys.values())
                .any(|c| matches!(c, RedactionChoice::On(_)))
    }
}

/// Validates the data controls of `file`.
pub fn data_config(file: &FileConfig) -> Result<DataConfig, ConfigError> {
    let r = &file.redaction;
    let hash_key = match r.hash_key.as_deref() {
        Some(v) => Arc::from(
            Secret::resolve(v)
                .map_err(|e| ConfigError::new("redaction.hash_key", e))?
                .expose()
                .as_bytes(),
        ),
        None => process_hash_key(),
    };
    let build = |key: &str, name: &str, p: &ProfileFile| -> Result<Arc<Policy>, ConfigError> {
        profile(key, name, p, hash_key.clone())
    };
    let gateway = if r.detectors.is_empty() {
        if r.mode.is_some() || r.restore.is_some() {
            return Err(ConfigError::new(
                "redaction.detectors",
                "must name at least one detector when `mode` or `restore` is set",
            ));
        }
        None
    } else {
        let p = ProfileFile {
            detectors: r.detectors.clone(),
            mode: r.mode.clone(),
            restore: r.restore,
        };
        Some(build("redaction", "gateway", &p)?)
    };
    let mut profiles = BTreeMap::new();
    for (name, p) in &r.profiles {
        if name == "off" {
            return Err(ConfigError::new(
                format!("redaction.profiles.{name}"),
                "`off` is reserved (it means no redaction)",
            ));
        }
        let key = format!("redaction.profiles.{name}");
        profiles.insert(name.clone(), build(&key, name, p)?);
    }
    let named = |key: &str, name: &str| -> Result<RedactionChoice, ConfigError> {
        match name {
            "off" => Ok(RedactionChoice::Off),
            name => profiles
                .get(name)
                .map(|p| RedactionChoice::On(p.clone()))
                .ok_or_else(|| {
                    ConfigError::new(
                        key,
                        format!("unknown redaction profile `{name}` (define it under [redaction.profiles])"),
                    )
                }),
        }
    };
    let mut levels: [RedactionChoice; 3] = Default::default();
    for (level, name) in &r.levels {
        let key = format!("redaction.levels.{level}");
        let l = SecurityLevel::parse(level).ok_or_else(|| {
            ConfigError::new(&key, "is not a security level (low, medium or high)")
        })?;
        levels[l as usize] = named(&key, name)?;
    }
    let mut keys = BTreeMap::new();
    for (i, k) in file.keys.iter().enumerate() {
        let key = format!("keys[{i}].redaction");
        let choice = match &k.redaction {
            None => continue,
            Some(KeyRedactionFile::Named(name)) => named(&key, name)?,
            Some(KeyRedactionFile::Inline(p)) => RedactionChoice::On(build(&key, &k.name, p)?),
        };
        keys.insert(k.name.clone(), choice);
    }
    let mut specs = Vec::with_capacity(file.content_rules.len());
    for (i, c) in file.content_rules.iter().enumerate() {
        let key = |field: &str| format!("content_rules[{i}].{field}");
        if c.name.trim().is_empty() {
            return Err(ConfigError::new(key("name"), "must not be empty"));
        }
        if specs.iter().any(|s: &RuleSpec| s.name.as_ref() == c.name) {
            return Err(ConfigError::new(
                key("name"),
                format!("duplicate rule name `{}`", c.name),
            ));
        }
        if c.patterns.is_empty() && c.words.iter().all(|w| w.trim().is_empty()) {
            return Err(ConfigError::new(
                key("patterns"),
                "a rule needs at least one pattern or word",
            ));
        }
        let on = match c.on.as_deref() {
            None | Some("both") => On::Both,
            Some("prompt") => On::Prompt,
            Some("response") => On::Response,
            Some(other) => {
                return Err(ConfigError::new(
                    key("on"),
                    format!("`{other}`: expected prompt, response or both"),
                ));
            }
        };
        let action = match c.action.as_deref() {
            None | Some("block") => Action::Block,
            Some("flag") => Action::Flag,
            Some(other) => {
                return Err(ConfigError::new(
                    key("action"),
                    format!("`{other}`: expected block or flag"),
                ));
            }
        };
        specs.push(RuleSpec {
            name: Arc::from(c.name.as_str()),
            patterns: c.patterns.clone(),
            words: c.words.clone(),
            on,
            action,
        });
    }
    let rules = ContentRules::new(specs).map_err(|(i, e)| match i {
        Some(i) => ConfigError::new(format!("content_rules[{i}].patterns"), e),
        None => ConfigError::new("content_rules", e),
    })?;
    let mut guards = BTreeMap::new();
    for (i, m) in file.models.iter().enumerate() {
        if let Some(g) = &m.guard {
            let valid = !g.is_empty()
                && g.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(ConfigError::new(
                    format!("models[{i}].guard"),
                    "a guard name is a script name: letters, digits, `-` and `_`",
                ));
            }
            guards.insert(m.name.clone(), g.clone());
        }
    }
    Ok(DataConfig {
        gateway,
        levels,
        keys,
        rules: Arc::new(rules),
        guards,
    })
}

fn profile(
    key: &str,
    name: &str,
    p: &ProfileFile,
    hash_key: Arc<[u8]>,
) -> Result<Arc<Policy>, ConfigError> {
    if p.detectors.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.detectors"),
            "must name at least one detector",
        ));
    }
    let mut detectors = Vec::with_capacity(p.detectors.len());
    for d in &p.detectors {
        detectors.push(Detector::parse(d).ok_or_else(|| {
            ConfigError::new(
                format!("{key}.detectors"),
                format!(
                    "unknown detector `{d}`; expected one of: {}",
                    Detector::ALL.map(Detector::as_str).join(", ")
                ),
            )
        })?);
    }
    let mode = match p.mode.as_deref() {
        None | Some("mask") => Mode::Mask,
        Some("hash") => Mode::Hash,
        Some("block") => Mode::Block,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{key}.mode"),
                format!("`{other}`: expected mask, hash or block"),
            ));
        }
    };
    let restore = p.restore.unwrap_or(false);
    if restore && mode == Mode::Block {
        return Err(ConfigError::new(
            format!("{key}.restore"),
            "has no meaning with mode `block`",
        ));
    }
    Policy::new(name, &detectors, mode, restore, hash_key)
        .map(Arc::new)
        .map_err(|e| ConfigError::new(format!("{key}.detectors"), e.to_string()))
}

/// The hash key when none is configured: random, the same for the process's life (so
/// reloads keep placeholders stable), different on every start.
fn process_hash_key() -> Arc<[u8]> {
    static KEY: std::sync::OnceLock<Arc<[u8]>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        if getrandom::fill(&mut k).is_err() {
            // No OS randomness: still unpredictable enough to keep placeholders opaque.
            for chunk in k.chunks_mut(8) {
                chunk.copy_from_slice(&fastrand::u64(..).to_le_bytes());
            }
        }
        Arc::from(&k[..])
    })
    .clone()
}

#[cfg(test)]
mod tests;
