//! Model prices in USD per million tokens: a table shipped in the binary
//! (`pricing/default.toml`), optionally replaced by one refreshed from a file or URL.
//!
//! A table is parsed and validated whole before it goes live; the live table sits behind
//! an `ArcSwap`, so a reader takes it once and a refresh never leaves it half-written. A
//! bad or unreachable source keeps the table that is live.

use std::{
    fmt,
    hash::{Hash, Hasher},
    io::Read,
    path::{Path, PathBuf},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::routing::capabilities::bare_model_name;

/// The embedded table.
const BUILTIN: &str = include_str!("../../pricing/default.toml");

/// Prices at or above this, per million tokens, are taken for typos: the dearest listed
/// model costs $150.
const MAX_PRICE: f64 = 1000.0;

/// How long one fetch of a URL source may take, body included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest table read from a source (the built-in one is some 6 KiB).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The shortest refresh interval; shorter ones are raised to it.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What one model costs, USD per million tokens. What a call costs from it is
/// [`Price::cost`] (in `usage::cost`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Prompt tokens read from the provider's cache; `None` charges them at `input`.
    pub cached_input: Option<f64>,
    /// Prompt tokens written to the provider's cache (Anthropic and Bedrock charge 1.25x
    /// input for a 5-minute cache write); `None` charges them at `input`.
    pub cache_write: Option<f64>,
}

/// The prices a deployment's config sets (`price_in`, `price_out`, `price_cached`); each
/// one set wins over the price table's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PriceOverride {
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cached_input: Option<f64>,
}

impl PriceOverride {
    /// These prices over `listed` (the table's); 0 for what neither sets. The table's
    /// cache-write price is kept only while the input price is the table's too: it is
    /// derived from that input price, so a deployment that sets its own `price_in` has
    /// its cache writes charged at that.
    pub fn over(&self, listed: Option<Price>) -> Price {
        Price {
            input: self.input.or(listed.map(|p| p.input)).unwrap_or(0.0),
            output: self.output.or(listed.map(|p| p.output)).unwrap_or(0.0),
            cached_input: self.cached_input.or(listed.and_then(|p| p.cached_input)),
            cache_write: match self.input {
                Some(_) => None,
                None => listed.and_then(|p| p.cache_write),
            },
        }
    }
}

/// A validated price table.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// Longest name first, so the first prefix that matches is the longest.
    entries: Vec<(Box<str>, Price)>,
}

impl PriceTable {
    /// The embedded table (parsed once; a unit test proves it parses).
    pub fn builtin() -> PriceTable {
        static TABLE: OnceLock<PriceTable> = OnceLock::new();
        TABLE
            .get_or_init(|| {
                PriceTable::parse(BUILTIN).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "the built-in price table is invalid; no prices");
                    PriceTable {
                        entries: Vec::new(),
                    }
                })
            })
            .clone()
    }

    /// Parses and validates a table in the `pricing/default.toml` format: at least one
    /// model; `input` and `output` required, `cached_input` and `cache_write` optional; every price a finite
    /// number, at least 0 and below 1000. An error names the model and the field.
    pub fn parse(text: &str) -> Result<PriceTable, String> {
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let models = match doc.remove("models") {
            Some(toml::Value::Table(models)) => models,
            Some(other) => {
                return Err(format!(
                    "`models` must be a table of models, not {}",
                    other.type_str()
                ));
            }
            None => toml::Table::new(),
        };
        if let Some(key) = doc.keys().next() {
            return Err(format!(
                "unknown key `{key}`; a price table has only `models`"
            ));
        }
        if models.is_empty() {
            return Err("the table prices no models (expected `[models.\"name\"]` tables)".into());
        }
        let mut entries = Vec::with_capacity(models.len());
        for (name, value) in models {
            if name.trim().is_empty() {
                return Err("a model has an empty name".into());
            }
            let price = price_of(&name, value)?;
            entries.push((name.into_boxed_str(), price));
        }
        entries.sort_by(|(a, _), (b, _)| {
            b.len().cmp(&a.len()).then_with(|| {
                a.bytes()
                    .map(|c| c.to_ascii_lowercase())
                    .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
            })
        });
        // Lookup ignores case, so names equal but for case would shadow each other.
        if let Some(pair) = entries
            .windows(2)
            .find(|pair| pair[0].0.eq_ignore_ascii_case(&pair[1].0))
        {
            return Err(format!(
                "models `{}` and `{}` differ only in case",
                pair[0].0, pair[1].0
            ));
        }
        Ok(PriceTable { entries })
    }

    /// The price of `model`: its exact name first (ASCII case ignored), then the longest
    /// prefix of its bare name — without a path (`accounts/x/models/`, `openai/`) or a
    /// Bedrock region and vendor (`us.anthropic.`), as `routing::capabilities` reads names.
    /// A dated or versioned name (`gpt-4o-2024-08-06`, `claude-3-5-haiku-20241022-v1:0`)
    /// falls to its prefix unless the table lists it on its own.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        let name = bare_model_name(model);
        if name.len() != model.len()
            && let Some((_, price)) = self
                .entries
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(model))
        {
            return Some(*price);
        }
        self.entries
            .iter()
            .find(|(prefix, _)| {
                name.get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            })
            .map(|(_, price)| *price)
    }

    /// A table that prices nothing (for tests and tools).
    pub fn empty() -> PriceTable {
        PriceTable::default()
    }

    /// Models priced.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no model is priced (never so for a parsed table).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One `[models."name"]` table, validated.
fn price_of(model: &str, value: toml::Value) -> Result<Price, String> {
    let toml::Value::Table(mut fields) = value else {
        return Err(format!(
            "model `{model}`: expected a table with `input` and `output`, not {}",
            value.type_str()
        ));
    };
    let mut take = |field: &str| -> Result<Option<f64>, String> {
        let Some(value) = fields.remove(field) else {
            return Ok(None);
        };
        let usd = match value {
            toml::Value::Float(f) => f,
            toml::Value::Integer(i) => i as f64,
            other => {
                return Err(format!(
                    "model `{model}`: `{field}` must be a number (USD per million tokens), \
                     not {}",
                    other.type_str()
                ));
            }
        };
        if !usd.is_finite() {
            return Err(format!(
                "model `{model}`: `{field}` must be a finite number, not {usd}"
            ));
        }
        if !(0.0..MAX_PRICE).contains(&usd) {
            return Err(format!(
                "model `{model}`: `{field}` = {usd} is outside 0 to {MAX_PRICE} USD per \
                 million tokens"
            ));
        }
        Ok(Some(usd))
    };
    let missing = |field: &str| format!("model `{model}`: `{field}` is missing");
    let input = take("input")?.ok_or_else(|| missing("input"))?;
    let output = take("output")?.ok_or_else(|| missing("output"))?;
    let cached_input = take("cached_input")?;
    let cache_write = take("cache_write")?;
    if let Some(field) = fields.keys().next() {
        return Err(format!(
            "model `{model}`: unknown field `{field}` (expected input, output, cached_input, \
             cache_write)"
        ));
    }
    Ok(Price {
        input,
        output,
        cached_input,
        cache_write,
    })
}

/// The live table, swapped atomically.
pub struct Pricing {
    table: ArcSwap<PriceTable>,
    /// Counts swaps; receivers wake on each one.
    generation: watch::Sender<u64>,
    /// The same count, for readers on the hot path (a plain load, no lock). Bumped after
    /// the table is stored: who sees a count sees at least that table.
    version: AtomicU64,
}

impl Pricing {
    /// Makes `table` live, at generation 0.
    pub fn new(table: PriceTable) -> Pricing {
        Pricing {
            table: ArcSwap::from_pointee(table),
            generation: watch::Sender::new(0),
            version: AtomicU64::new(0),
        }
    }

    /// What a deployment of `model` costs now: `set` over the live table's price.
    pub fn price(&self, model: &str, set: &PriceOverride) -> Price {
        set.over(self.lookup(model))
    }

    /// Bumped on every swap, like [`Pricing::generation`], but read without a lock: state
    /// derived from prices (the policies' candidate tables) compares it per decision.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The live table.
    pub fn current(&self) -> Arc<PriceTable> {
        self.table.load_full()
    }

    /// The live table's price for `model`, without taking a reference to the table.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        self.table.load().lookup(model)
    }

    /// Bumped on every successful swap.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// A receiver of the generation that wakes on every swap (for state derived from prices).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Makes `table` live; the generation moves with it, one swap at a time.
    pub fn replace(&self, table: PriceTable) {
        let table = Arc::new(table);
        self.generation.send_modify(|generation| {
            self.table.store(table);
            *generation += 1;
            self.version.store(*generation, Ordering::Release);
        });
    }
}

/// Where a refreshed table comes from. Shown (`Display`, `Debug`) as a path or as
/// `scheme://host/path`: a URL's credentials and query never print.
#[derive(Clone, PartialEq, Eq)]
pub enum PricingSource {
    File(PathBuf),
    Url(reqwest::Url),
}

impl PricingSource {
    /// `http://` and `https://` are URLs, any other `scheme://` is refused, the rest is a
    /// file path.
    pub fn parse(s: &str) -> Result<PricingSource, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the pricing source is empty".into());
        }
        if let Some((scheme, _)) = s.split_once("://")
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(format!(
                    "pricing source: `{scheme}://` is not supported; use http(s):// or a file path"
                ));
            }
            // url's errors do not repeat the input, which may hold a token.
            let url = reqwest::Url::parse(s).map_err(|e| format!("pricing source URL: {e}"))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err("pricing source URL has no host".into());
            }
            return Ok(PricingSource::Url(url));
        }
        Ok(PricingSource::File(PathBuf::from(s)))
    }
}

impl fmt::Display for PricingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PricingSource::File(path) => write!(f, "{}", path.display()),
            PricingSource::Url(url) => write!(f, "{}", Shown(url)),
        }
    }
}

impl fmt::Debug for PricingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PricingSource::File(path) => f.debug_tuple("File").field(path).finish(),
            PricingSource::Url(url) => write!(f, "Url({})", Shown(url)),
        }
    }
}

/// A URL as logs may show it: `scheme://host[:port]/path`.
struct Shown<'a>(&'a reqwest::Url);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        write!(f, "{}://{}", url.scheme(), url.host_str().unwrap_or(""))?;
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(url.path())
    }
}

/// Conditional-fetch state kept between refreshes.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    etag: Option<String>,
    /// For URLs the `Last-Modified` header; for files the mtime and length.
    last_modified: Option<String>,
    /// A hash of the text last made live: a source without validators that serves the
    /// same text again is not modified.
    digest: Option<u64>,
}

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// A new table is live.
    Updated,
    /// The source has not changed since the last refresh.
    NotModified,
}

/// Why a refresh kept the live table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RefreshError {
    /// The source could not be read: connect, timeout, an error status, a missing file.
    Unreachable(String),
    /// The source was read but holds no valid table.
    Rejected(String),
}

impl RefreshError {
    fn label(&self) -> &'static str {
        match self {
            RefreshError::Unreachable(_) => "unreachable",
            RefreshError::Rejected(_) => "rejected",
        }
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshError::Unreachable(e) | RefreshError::Rejected(e) => f.write_str(e),
        }
    }
}

/// One refresh: URL sources send `If-None-Match` / `If-Modified-Since` from `validators`
/// and take 304 as [`Refreshed::NotModified`]; files compare mtime and length. The text is
/// parsed and validated, and only a valid table is swapped in: a bad update returns `Err`
/// and keeps the live table (and the old validators, so the next refresh reads it again).
pub async fn refresh_once(
    pricing: &Pricing,
    source: &PricingSource,
    validators: &mut Validators,
    client: &reqwest::Client,
) -> Result<Refreshed, String> {
    refresh(pricing, source, validators, client)
        .await
        .map_err(|e| e.to_string())
}

async fn refresh(
    pricing: &Pricing,
    source: &PricingSource,
    validators: &mut Validators,
    client: &reqwest::Client,
) -> Result<Refreshed, RefreshError> {
    let fetched = match source {
        PricingSource::File(path) => read_file(path, validators).await?,
        PricingSource::Url(url) => fetch(client, url, validators).await?,
    };
    let Some(fetched) = fetched else {
        return Ok(Refreshed::NotModified);
    };
    let mut hasher = std::hash::DefaultHasher::new();
    fetched.text.hash(&mut hasher);
    let digest = Some(hasher.finish());
    if digest != validators.digest {
        let table = PriceTable::parse(&fetched.text)
            .map_err(|e| RefreshError::Rejected(format!("{source}: {e}")))?;
        pricing.replace(table);
    }
    let updated = digest != validators.digest;
    *validators = Validators {
        etag: fetched.etag,
        last_modified: fetched.last_modified,
        digest,
    };
    Ok(if updated {
        Refreshed::Updated
    } else {
        Refreshed::NotModified
    })
}

/// A source's text and the validators that came with it.
struct Fetched {
    text: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// GETs a URL source, conditionally; `None` on 304.
async fn fetch(
    client: &reqwest::Client,
    url: &reqwest::Url,
    validators: &Validators,
) -> Result<Option<Fetched>, RefreshError> {
    let shown = Shown(url);
    let unreachable =
        |e: reqwest::Error| RefreshError::Unreachable(format!("GET {shown}: {}", describe(e)));
    let mut request = client.get(url.clone()).timeout(FETCH_TIMEOUT);
    if let Some(etag) = &validators.etag {
        request = request.header(http::header::IF_NONE_MATCH, etag.as_str());
    }
    if let Some(date) = &validators.last_modified {
        request = request.header(http::header::IF_MODIFIED_SINCE, date.as_str());
    }
    let mut response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    if status == http::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(RefreshError::Unreachable(format!(
            "GET {shown}: HTTP {status}"
        )));
    }
    let too_big = || RefreshError::Rejected(format!("{shown}: the table is over {MAX_BODY} bytes"));
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(too_big());
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let etag = header(http::header::ETAG);
    let last_modified = header(http::header::LAST_MODIFIED);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body)
        .map_err(|_| RefreshError::Rejected(format!("{shown}: the table is not UTF-8")))?;
    Ok(Some(Fetched {
        text,
        etag,
        last_modified,
    }))
}

/// A reqwest failure without its URL (whose query may hold a token), causes included.
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", FETCH_TIMEOUT.as_secs());
    }
    crate::providers::describe_failure(e)
}

/// Reads a file source off the runtime's threads; `None` when its mtime and length are
/// those seen last.
async fn read_file(path: &Path, validators: &Validators) -> Result<Option<Fetched>, RefreshError> {
    let owned = path.to_owned();
    let seen = validators.last_modified.clone();
    tokio::task::spawn_blocking(move || read_file_now(&owned, seen.as_deref()))
        .await
        .map_err(|e| RefreshError::Unreachable(format!("{}: {e}", path.display())))?
}

fn read_file_now(path: &Path, seen: Option<&str>) -> Result<Option<Fetched>, RefreshError> {
    let unreachable =
        |e: std::io::Error| RefreshError::Unreachable(format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(unreachable)?;
    let meta = file.metadata().map_err(unreachable)?;
    // Without an mtime every refresh reads the file; the digest still spots no change.
    let stamp = meta.modified().ok().map(|mtime| {
        let since = match mtime.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
            Err(e) => format!("-{:?}", e.duration()),
        };
        format!("{since}+{}", meta.len())
    });
    if stamp.is_some() && stamp.as_deref() == seen {
        return Ok(None);
    }
    let mut body = Vec::new();
    file.take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(unreachable)?;
    if body.len() > MAX_BODY {
        return Err(RefreshError::Rejected(format!(
            "{}: the table is over {MAX_BODY} bytes",
            path.display()
        )));
    }
    let text = String::from_utf8(body).map_err(|_| {
        RefreshError::Rejected(format!("{}: the table is not UTF-8", path.display()))
    })?;
    Ok(Some(Fetched {
        text,
        etag: None,
        last_modified: stamp,
    }))
}

/// Refreshes at once and then every `interval` (at least a second) until `shutdown` is
/// cancelled. A new table is live for the next routing decision and request record: nothing
/// is rebuilt. Each result is counted in
/// `switchyard_pricing_refresh_total{result="updated"|"not_modified"|"rejected"|"unreachable"}`
/// and logged: an update at info, a failure at warn once per distinct error, the recovery
/// after failures at info. Gauge `switchyard_pricing_models` holds the live table's size.
pub async fn refresh_loop(
    pricing: Arc<Pricing>,
    source: PricingSource,
    interval: Duration,
    client: reqwest::Client,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let models = |pricing: &Pricing| pricing.current().len() as f64;
    metrics::gauge!("switchyard_pricing_models").set(models(&pricing));
    let mut ticker = tokio::time::interval(interval.max(MIN_INTERVAL));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut validators = Validators::default();
    let mut log = RefreshLog::default();
    loop {
        let step = async {
            ticker.tick().await;
            refresh(&pricing, &source, &mut validators, &client).await
        };
        let result = tokio::select! {
            () = shutdown.cancelled() => break,
            result = step => result,
        };
        let label = match &result {
            Ok(Refreshed::Updated) => "updated",
            Ok(Refreshed::NotModified) => "not_modified",
            Err(e) => e.label(),
        };
        metrics::counter!("switchyard_pricing_refresh_total", "result" => label).increment(1);
        metrics::gauge!("switchyard_pricing_models").set(models(&pricing));
        match (&result, log.note(&result)) {
            (Err(e), Note::NewFailure) => tracing::warn!(
                source = %source, result = label, error = %e,
                "pricing refresh failed; keeping the live table"
            ),
            (Err(e), _) => tracing::debug!(
                source = %source, result = label, error = %e, "pricing refresh failed again"
            ),
            (Ok(_), Note::Recovered) => tracing::info!(
                source = %source, result = label, "pricing source readable again"
            ),
            _ => {}
        }
        if let Ok(Refreshed::Updated) = result {
            tracing::info!(
                source = %source,
                models = pricing.current().len(),
                generation = pricing.generation(),
                "pricing table updated"
            );
        }
    }
}

/// What a refresh result means for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Note {
    /// Nothing beyond the usual.
    Quiet,
    /// A failure unlike the one before it: worth a warning.
    NewFailure,
    /// The first success after failures.
    Recovered,
}

/// Remembers the last failure so each distinct one is warned about once.
#[derive(Debug, Default)]
struct RefreshLog {
    last_error: Option<RefreshError>,
}

impl RefreshLog {
    fn note(&mut self, result: &Result<Refreshed, RefreshError>) -> Note {
        match result {
            Err(e) if self.last_error.as_ref() == Some(e) => Note::Quiet,
            Err(e) => {
                self.last_error = Some(e.clone());
                Note::NewFailure
            }
            Ok(_) if self.last_error.take().is_some() => Note::Recovered,
            Ok(_) => Note::Quiet,
        }
    }
}

#[cfg(test)]
mod tests;
