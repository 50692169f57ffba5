//! The price table, its lookup rules and arithmetic, and refreshes over real sockets and files.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::*;
use crate::providers::presets::PRESETS;

/// Every await in these tests is bounded by this.
const BOUND: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f).await.expect("timed out")
}

/// The prefixes of `KNOWN` in `routing/capabilities.rs`. `KNOWN` is private there, so the
/// list is copied; [`known_prefixes_in_source`] fails when the two drift apart.
const KNOWN_PREFIXES: &[&str] = &[
    "gpt-4o",
    "gpt-4.1",
    "gpt-5",
    "o3",
    "o4-mini",
    "claude-opus-4",
    "claude-sonnet-4",
    "claude-haiku-4",
    "claude-3-5-haiku",
    "gemini-2.5",
    "gemini-2.0-flash",
    "deepseek-chat",
    "deepseek-reasoner",
    "mistral-large",
    "mistral-small",
    "llama-3.3-70b",
    "llama-3.1-8b",
    "qwen-plus",
    "qwen-turbo",
    "qwen-max",
    "grok-3",
];

/// Known prefixes the table deliberately does not price as such, and why.
const UNPRICED_PREFIXES: &[(&str, &str)] = &[(
    "gemini-2.5",
    "a family of three prices; gemini-2.5-pro, -flash and -flash-lite each have an entry",
)];

/// Preset default models the table deliberately does not price, and why.
const UNPRICED_MODELS: &[(&str, &str)] = &[(
    "openrouter/auto",
    "OpenRouter bills whichever model it routes to; there is no fixed price",
)];

/// The string literals of `KNOWN` in capabilities.rs: its model prefixes.
fn known_prefixes_in_source() -> Vec<&'static str> {
    let source = include_str!("../../routing/capabilities.rs");
    let start = source
        .find("const KNOWN")
        .expect("capabilities.rs no longer has `const KNOWN`; update this test");
    let block = &source[start..];
    let end = block.find("\n];").expect("the end of KNOWN");
    block[..end].split('"').skip(1).step_by(2).collect()
}

fn table(text: &str) -> PriceTable {
    PriceTable::parse(text).unwrap()
}

const SMALL: &str = r#"
[models."gpt-4o"]
input = 2.5
output = 10
cached_input = 1.25

[models."gpt-4o-mini"]
input = 0.15
output = 0.6
"#;

const UPDATED: &str = r#"
[models."gpt-4o"]
input = 2.0
output = 8.0

[models."new-model"]
input = 1
output = 2
"#;

const BAD: &str = r#"
[models."gpt-4o"]
input = -1
output = 8.0
"#;

#[test]
fn the_builtin_table_parses_and_prices_every_known_capabilities_prefix() {
    let builtin = PriceTable::parse(BUILTIN).unwrap();
    assert_eq!(PriceTable::builtin().len(), builtin.len());
    for prefix in KNOWN_PREFIXES {
        if let Some((_, reason)) = UNPRICED_PREFIXES.iter().find(|(p, _)| p == prefix) {
            assert!(
                builtin.lookup(prefix).is_none(),
                "{prefix} is listed unpriced"
            );
            let members = builtin
                .entries
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .count();
            assert!(
                members >= 2,
                "{prefix}: {reason}, but has {members} entries"
            );
            continue;
        }
        assert!(
            builtin.lookup(prefix).is_some(),
            "the built-in table has no price for known model `{prefix}`"
        );
    }
    for family in [
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
    ] {
        assert!(builtin.lookup(family).is_some(), "{family}");
    }
}

#[test]
fn the_copied_known_prefixes_match_capabilities_rs() {
    let mut in_source = known_prefixes_in_source();
    let mut copied = KNOWN_PREFIXES.to_vec();
    in_source.sort_unstable();
    copied.sort_unstable();
    assert_eq!(
        in_source, copied,
        "KNOWN in routing/capabilities.rs changed: update KNOWN_PREFIXES here and \
         pricing/default.toml"
    );
}

#[test]
fn the_builtin_table_prices_every_preset_default_model() {
    let builtin = PriceTable::builtin();
    for preset in PRESETS {
        for model in preset.default_models {
            if UNPRICED_MODELS.iter().any(|(m, _)| m == model) {
                assert!(
                    builtin.lookup(model).is_none(),
                    "{model} is listed unpriced"
                );
                continue;
            }
            assert!(
                builtin.lookup(model).is_some(),
                "preset `{}` offers `{model}`, which has no price",
                preset.kind
            );
        }
    }
}

#[test]
fn builtin_prices_are_plausible() {
    // Spot checks against the price lists, and cached reads never dearer than input.
    let builtin = PriceTable::builtin();
    let mini = builtin.lookup("gpt-4o-mini").unwrap();
    assert_eq!(
        mini,
        Price {
            input: 0.15,
            output: 0.60,
            cached_input: Some(0.075),
            cache_write: None,
        }
    );
    assert_eq!(builtin.lookup("claude-sonnet-4-5").unwrap().output, 15.0);
    // Anthropic's 5-minute cache writes: 1.25x input, on Bedrock too.
    let sonnet = builtin
        .lookup("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
        .unwrap();
    assert_eq!(sonnet.cache_write, Some(3.75));
    assert_eq!(mini.cache_write, None);
    for (name, price) in &builtin.entries {
        assert!(
            price.cached_input.is_none_or(|c| c <= price.input),
            "{name}"
        );
        // Embedding models bill input only.
        let embedding = name.contains("embed");
        assert!(
            price.input > 0.0 && (price.output > 0.0 || embedding && price.output == 0.0),
            "{name}"
        );
    }
}

#[test]
fn lookup_takes_the_exact_name_before_the_longest_prefix() {
    let builtin = PriceTable::builtin();
    let gpt_4o = builtin.lookup("gpt-4o").unwrap();
    assert_eq!(gpt_4o.input, 2.5);
    // Longest prefix: gpt-4o-mini, not gpt-4o.
    assert_eq!(
        builtin.lookup("gpt-4o-mini-2024-07-18").unwrap().input,
        0.15
    );
    assert_eq!(builtin.lookup("o3-mini").unwrap().input, 1.10);
    assert_eq!(builtin.lookup("o3").unwrap().input, 2.0);
    // A dated name falls to its prefix, unless the table lists it on its own.
    assert_eq!(builtin.lookup("gpt-4o-2024-08-06"), Some(gpt_4o));
    assert_eq!(builtin.lookup("gpt-4o-2024-05-13").unwrap().input, 5.0);
    assert_eq!(
        builtin.lookup("claude-opus-4-5-20251101").unwrap().input,
        5.0
    );
    assert_eq!(
        builtin.lookup("claude-opus-4-20250514").unwrap().input,
        15.0
    );
    assert_eq!(builtin.lookup("GPT-4O"), Some(gpt_4o));
    assert_eq!(builtin.lookup("my-finetune"), None);
    assert_eq!(builtin.lookup(""), None);
}

#[test]
fn lookup_reads_the_bare_name_of_paths_and_bedrock_ids() {
    let builtin = PriceTable::builtin();
    let sonnet = builtin.lookup("claude-sonnet-4").unwrap();
    assert_eq!(
        builtin.lookup("us.anthropic.claude-sonnet-4-20250514-v1:0"),
        Some(sonnet)
    );
    assert_eq!(
        builtin.lookup("global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        Some(sonnet)
    );
    assert_eq!(
        builtin
            .lookup("anthropic.claude-3-5-haiku-20241022-v1:0")
            .unwrap()
            .input,
        0.80
    );
    assert_eq!(
        builtin.lookup("us.amazon.nova-pro-v1:0").unwrap().input,
        0.80
    );
    assert_eq!(
        builtin
            .lookup("accounts/fireworks/models/llama-v3p1-8b-instruct")
            .unwrap()
            .input,
        0.20
    );
    assert_eq!(
        builtin
            .lookup("meta-llama/Llama-3.3-70B-Instruct-Turbo")
            .unwrap()
            .input,
        0.88
    );
    assert_eq!(
        builtin.lookup("llama-3.3-70b-versatile").unwrap().input,
        0.59
    );
    assert_eq!(builtin.lookup("openai/gpt-4o-mini").unwrap().input, 0.15);
}

#[test]
fn an_entry_with_a_path_matches_that_full_name_first() {
    let t = table(
        r#"
[models."llama-3.3-70b"]
input = 0.59
output = 0.79

[models."together/llama-3.3-70b-instruct"]
input = 0.88
output = 0.88
"#,
    );
    assert_eq!(
        t.lookup("together/llama-3.3-70b-instruct").unwrap().input,
        0.88
    );
    assert_eq!(t.lookup("groq/llama-3.3-70b-instruct").unwrap().input, 0.59);
}

#[test]
fn cost_charges_cached_prompt_tokens_at_the_cached_rate() {
    use crate::usage::cost::Tokens;
    let price = Price {
        input: 2.0,
        output: 8.0,
        cached_input: Some(0.5),
        cache_write: None,
    };
    // 600k fresh at $2, 400k cached at $0.50, 250k out at $8.
    let tokens = Tokens {
        input: 600_000,
        cached_input: 400_000,
        output: 250_000,
        ..Tokens::default()
    };
    assert_eq!(price.cost(&tokens).total, 3_400_000_000);
    let uncached = Price {
        cached_input: None,
        ..price
    };
    let prompt_only = Tokens {
        output: 0,
        ..tokens
    };
    assert_eq!(uncached.cost(&prompt_only).total, 2_000_000_000);
    assert_eq!(price.cost(&Tokens::default()).total, 0);
    let mini = PriceTable::builtin().lookup("gpt-4o-mini").unwrap();
    let thousand_each = Tokens {
        input: 1_000,
        output: 1_000,
        ..Tokens::default()
    };
    assert_eq!(mini.cost(&thousand_each).total, 750_000);
}

#[test]
fn parse_accepts_integers_and_leaves_cached_input_optional() {
    let t = table(UPDATED);
    assert_eq!(t.len(), 2);
    assert!(!t.is_empty());
    assert_eq!(
        t.lookup("new-model"),
        Some(Price {
            input: 1.0,
            output: 2.0,
            cached_input: None,
            cache_write: None,
        })
    );
}

#[test]
fn parse_rejects_bad_prices_naming_the_model_and_field() {
    let cases = [
        ("input = -1\noutput = 1", "`input`"),
        ("input = nan\noutput = 1", "`input` must be a finite"),
        ("input = 1\noutput = inf", "`output` must be a finite"),
        ("input = \"NaN\"\noutput = 1", "`input` must be a number"),
        (
            "input = 1\noutput = 1\ncached_input = \"0.5\"",
            "`cached_input`",
        ),
        ("input = 1\noutput = 1000", "`output` = 1000"),
        ("input = 1", "`output` is missing"),
        ("output = 1", "`input` is missing"),
        (
            "input = 1\noutput = 1\ncache_read = 0.1",
            "unknown field `cache_read`",
        ),
    ];
    for (fields, expected) in cases {
        let text =
            format!("[models.\"ok\"]\ninput = 1\noutput = 2\n\n[models.\"bad-model\"]\n{fields}\n");
        let err = PriceTable::parse(&text).unwrap_err();
        assert!(err.contains("model `bad-model`"), "{fields}: {err}");
        assert!(err.contains(expected), "{fields}: {err}");
    }
}

#[test]
fn parse_rejects_tables_that_price_nothing_or_are_not_tables() {
    for text in ["", "# nothing\n", "[models]\n"] {
        let err = PriceTable::parse(text).unwrap_err();
        assert!(err.contains("no models"), "{text:?}: {err}");
    }
    assert!(
        PriceTable::parse("models = 3")
            .unwrap_err()
            .contains("`models` must be a table")
    );
    assert!(
        PriceTable::parse("[prices.\"x\"]\ninput = 1\noutput = 1")
            .unwrap_err()
            .contains("unknown key `prices`")
    );
    assert!(PriceTable::parse("[models.\"x\"\ninput = 1").is_err());
    let err = PriceTable::parse("[models]\n\"x\" = 1").unwrap_err();
    assert!(err.contains("model `x`"), "{err}");
    let err = PriceTable::parse(
        "[models.\"GPT-4o\"]\ninput = 1\noutput = 1\n[models.\"gpt-4o\"]\ninput = 1\noutput = 1",
    )
    .unwrap_err();
    assert!(err.contains("differ only in case"), "{err}");
}

#[test]
fn replace_swaps_the_table_and_bumps_the_generation() {
    let pricing = Pricing::new(table(SMALL));
    let mut changes = pricing.subscribe();
    let before = pricing.current();
    assert_eq!(pricing.generation(), 0);
    pricing.replace(table(UPDATED));
    assert_eq!(pricing.generation(), 1);
    assert!(changes.has_changed().unwrap());
    assert_eq!(*changes.borrow_and_update(), 1);
    assert_eq!(pricing.lookup("new-model").unwrap().output, 2.0);
    // A reader holding the old table keeps it.
    assert_eq!(before.lookup("gpt-4o").unwrap().input, 2.5);
    assert!(before.lookup("new-model").is_none());
}

#[test]
fn a_source_is_a_url_or_a_path_and_a_url_shows_without_secrets() {
    let url =
        PricingSource::parse("https://user:pw@prices.example.com:8443/v1/table.toml?token=s3cret")
            .unwrap();
    assert!(matches!(url, PricingSource::Url(_)));
    let shown = url.to_string();
    assert_eq!(shown, "https://prices.example.com:8443/v1/table.toml");
    assert!(!format!("{url:?}").contains("s3cret"));
    assert!(!format!("{url:?}").contains("pw"));
    assert!(matches!(
        PricingSource::parse("HTTP://example.com/p").unwrap(),
        PricingSource::Url(_)
    ));
    assert_eq!(
        PricingSource::parse("prices/table.toml").unwrap(),
        PricingSource::File(PathBuf::from("prices/table.toml"))
    );
    assert_eq!(
        PricingSource::parse("/etc/switchyard/prices.toml").unwrap(),
        PricingSource::File(PathBuf::from("/etc/switchyard/prices.toml"))
    );
    assert!(
        PricingSource::parse("ftp://example.com/p")
            .unwrap_err()
            .contains("ftp://")
    );
    assert!(PricingSource::parse("").is_err());
    let err = PricingSource::parse("https://exa mple.com/?token=s3cret").unwrap_err();
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn the_log_warns_once_per_distinct_failure_and_notes_recovery() {
    let mut log = RefreshLog::default();
    let down = Err(RefreshError::Unreachable("connection refused".into()));
    let bad = Err(RefreshError::Rejected(
        "model `x`: `input` is missing".into(),
    ));
    assert_eq!(log.note(&Ok(Refreshed::Updated)), Note::Quiet);
    assert_eq!(log.note(&down), Note::NewFailure);
    assert_eq!(log.note(&down), Note::Quiet);
    assert_eq!(log.note(&bad), Note::NewFailure);
    assert_eq!(log.note(&down), Note::NewFailure);
    assert_eq!(log.note(&Ok(Refreshed::NotModified)), Note::Recovered);
    assert_eq!(log.note(&Ok(Refreshed::NotModified)), Note::Quiet);
    assert_eq!(log.note(&down), Note::NewFailure);
}

// --- URL sources, against a real HTTP server on 127.0.0.1:0 ---

/// A price-table server: serves `body` with `etag`, answers 304 to a matching
/// `If-None-Match`, and records the `If-None-Match` of every request.
#[derive(Clone, Default)]
struct Origin {
    served: Arc<Mutex<(String, String)>>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Origin {
    fn serve(&self, body: &str, etag: &str) {
        *self.served.lock().unwrap() = (body.to_owned(), etag.to_owned());
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

async fn table_route(State(origin): State<Origin>, headers: HeaderMap) -> Response {
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    origin.seen.lock().unwrap().push(if_none_match.clone());
    let (body, etag) = origin.served.lock().unwrap().clone();
    if if_none_match.as_deref() == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    ([(header::ETAG, etag)], body).into_response()
}

async fn start_origin() -> (Origin, SocketAddr) {
    let origin = Origin::default();
    let huge = "#".repeat(MAX_BODY + 1);
    let app = Router::new()
        .route("/prices.toml", get(table_route))
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        )
        .route("/huge", get(move || async move { huge }))
        .route(
            "/huge-stream",
            get(|| async {
                let chunk = Bytes::from(vec![b'#'; 64 * 1024]);
                let chunks = (0..(MAX_BODY / chunk.len() + 2))
                    .map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .with_state(origin.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, addr)
}

fn client() -> reqwest::Client {
    crate::providers::http_client(Duration::from_secs(2)).unwrap()
}

fn url(addr: SocketAddr, path: &str) -> PricingSource {
    PricingSource::parse(&format!("http://{addr}{path}")).unwrap()
}

#[tokio::test]
async fn a_url_source_sends_its_etag_and_a_304_changes_nothing() {
    let (origin, addr) = bounded(start_origin()).await;
    origin.serve(SMALL, "\"v1\"");
    let (source, client) = (url(addr, "/prices.toml?token=s3cret"), client());
    let pricing = Pricing::new(PriceTable::builtin());
    let mut validators = Validators::default();
    let first = bounded(refresh_once(&pricing, &source, &mut validators, &client)).await;
    assert_eq!(first, Ok(Refreshed::Updated));
    assert_eq!(pricing.generation(), 1);
    assert_eq!(pricing.current().len(), 2);
    let second = bounded(refresh_once(&pricing, &source, &mut validators, &client)).await;
    assert_eq!(second, Ok(Refreshed::NotModified));
    assert_eq!(pricing.generation(), 1);
    assert_eq!(origin.seen(), [None, Some("\"v1\"".to_owned())]);
}

#[tokio::test]
async fn a_url_source_with_a_new_table_is_swapped_in() {
    let (origin, addr) = bounded(start_origin()).await;
    origin.serve(SMALL, "\"v1\"");
    let (source, client) = (url(addr, "/prices.toml"), client());
    let pricing = Pricing::new(PriceTable::builtin());
    let mut validators = Validators::default();
    bounded(refresh_once(&pricing, &source, &mut validators, &client))
        .await
        .unwrap();
    origin.serve(UPDATED, "\"v2\"");
    let result = bounded(refresh_once(&pricing, &source, &mut validators, &client)).await;
    assert_eq!(result, Ok(Refreshed::Updated));
    assert_eq!(pricing.generation(), 2);
    assert_eq!(pricing.lookup("gpt-4o").unwrap().input, 2.0);
    assert_eq!(pricing.lookup("new-model").unwrap().output, 2.0);
    // A new ETag over the same text is not an update.
    origin.serve(UPDATED, "\"v3\"");
    let result = bounded(refresh_once(&pricing, &source, &mut validators, &client)).await;
    assert_eq!(result, Ok(Refreshed::NotModified));
    assert_eq!(pricing.generation(), 2);
    assert_eq!(
        origin.seen(),
        [None, Some("\"v1\"".to_owned()), Some("\"v2\"".to_owned())]
    );
}

#[tokio::test]
async fn a_bad_table_is_refused_and_the_live_one_kept() {
    let (origin, addr) = bounded(start_origin()).await;
    origin.serve(SMALL, "\"v1\"");
    let (source, client) = (url(addr, "/prices.toml?token=s3cret"), client());
    let pricing = Pricing::new(PriceTable::builtin());
    let mut validators = Validators::default();
    bounded(refresh_once(&pricing, &source, &mut validators, &client))
        .await
        .unwrap();
    origin.serve(BAD, "\"bad\"");
    let err = bounded(refresh_once(&pricing, &source, &mut validators, &client))
        .await
        .unwrap_err();
    assert!(
        err.contains("model `gpt-4o`") && err.contains("`input`"),
        "{err}"
    );
    assert!(err.contains(&format!("http://{addr}/prices.toml")), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert_eq!(pricing.generation(), 1);
    assert_eq!(pricing.lookup("gpt-4o").unwrap().input, 2.5);
    // The bad table's ETag is not kept: the next refresh fetches it again and refuses again.
    let again = bounded(refresh_once(&pricing, &source, &mut validators, &client)).await;
    assert!(again.is_err());
    assert_eq!(origin.seen().last(), Some(&Some("\"v1\"".to_owned())));
}

#[tokio::test]
async fn an_unreachable_or_failing_url_is_an_error_without_secrets() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let client = client();
    let pricing = Pricing::new(PriceTable::builtin());
    let mut validators = Validators::default();
    let source = url(closed, "/prices.toml?token=s3cret");
    let err = bounded(refresh_once(&pricing, &source, &mut validators, &client))
        .await
        .unwrap_err();
    assert!(
        err.starts_with(&format!("GET http://{closed}/prices.toml: ")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert!(matches!(
        bounded(refresh(&pricing, &source, &mut validators, &client)).await,
        Err(RefreshError::Unreachable(_))
    ));

    let (_origin, addr) = bounded(start_origin()).await;
    let err = bounded(refresh(
        &pricing,
        &url(addr, "/broken"),
        &mut validators,
        &client,
    ))
    .await;
    assert!(
        matches!(&err, Err(RefreshError::Unreachable(e)) if e.contains("500")),
        "{err:?}"
    );
    assert_eq!(pricing.generation(), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_or_without_a_length() {
    let (_origin, addr) = bounded(start_origin()).await;
    let client = client();
    let pricing = Pricing::new(PriceTable::builtin());
    for path in ["/huge", "/huge-stream"] {
        let mut validators = Validators::default();
        let err = bounded(refresh(
            &pricing,
            &url(addr, path),
            &mut validators,
            &client,
        ))
        .await;
        assert!(
            matches!(&err, Err(RefreshError::Rejected(e)) if e.contains("over")),
            "{path}: {err:?}"
        );
    }
    assert_eq!(pricing.generation(), 0);
}

// --- File sources ---

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "switchyard-pricing-{}-{name}.toml",
            std::process::id()
        ));
        TempFile(path)
    }

    fn write(&self, text: &str, mtime: SystemTime) {
        std::fs::write(&self.0, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&self.0)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_file_source_is_reread_only_when_its_mtime_changes() {
    let file = TempFile::new("mtime");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    file.write(SMALL, t0);
    let source = PricingSource::File(file.0.clone());
    let client = client();
    let pricing = Pricing::new(PriceTable::builtin());
    let mut validators = Validators::default();
    let first = bounded(refresh_once(&pricing, &source, &mut validators, &client)).await;
    assert_eq!(first, Ok(Refreshed::Updated));
    assert_eq!(pricing.current().len(), 2);

    // Same mtime and length: not even read (this text would be refused).
    let same_length = "#".repeat(SMALL.len());
    file.write(&same_length, t0);
    let unchanged = bounded(refresh_once(&pricing, &source, &mut validators, &client)).await;
    assert_eq!(unchanged, Ok(Refreshed::NotModified));
    assert_eq!(pricing.generation(), 1);

    file.write(UPDATED, t0 + Duration::from_secs(60));
    let rewritten = bounded(refresh_once(&pricing, &source, &mut validators, &client)).await;
    assert_eq!(rewritten, Ok(Refreshed::Updated));
    assert_eq!(pricing.generation(), 2);
    assert_eq!(pricing.lookup("new-model").unwrap().input, 1.0);

    file.write(BAD, t0 + Duration::from_secs(120));
    let err = bounded(refresh_once(&pricing, &source, &mut validators, &client))
        .await
        .unwrap_err();
    assert!(err.contains("model `gpt-4o`"), "{err}");
    assert_eq!(pricing.generation(), 2);
    assert!(pricing.lookup("new-model").is_some());
}

#[tokio::test]
async fn a_missing_file_is_unreachable() {
    let file = TempFile::new("missing");
    let pricing = Pricing::new(PriceTable::builtin());
    let result = bounded(refresh(
        &pricing,
        &PricingSource::File(file.0.clone()),
        &mut Validators::default(),
        &client(),
    ))
    .await;
    assert!(
        matches!(result, Err(RefreshError::Unreachable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_loop_refreshes_at_once_counts_the_result_and_stops_on_shutdown() {
    let prometheus = crate::telemetry::prometheus();
    let file = TempFile::new("loop");
    file.write(SMALL, SystemTime::now());
    let pricing = Arc::new(Pricing::new(PriceTable::builtin()));
    let mut changes = pricing.subscribe();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(refresh_loop(
        pricing.clone(),
        PricingSource::File(file.0.clone()),
        Duration::from_secs(3600),
        client(),
        stop.clone(),
    ));
    bounded(changes.changed()).await.unwrap();
    assert_eq!(pricing.current().len(), 2);
    stop.cancel();
    bounded(task).await.unwrap();
    let rendered = prometheus.render();
    assert!(
        rendered.contains("switchyard_pricing_refresh_total{result=\"updated\"} 1"),
        "{rendered}"
    );
    assert!(
        rendered.contains("switchyard_pricing_models 2"),
        "{rendered}"
    );
}
