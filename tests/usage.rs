//! The usage ledger end to end: usage and cost by component for every wire format (golden
//! figures), `GET /admin/usage`, the ledger surviving a restart of the real binary, the
//! `usage` command's table, and two gateways adding up in one Redis.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use common::{
    FAST, Mock, client, config_for, hello, process::Served, redis::RedisServer, serve, within,
};
use serde_json::{Value, json};
use switchyard::{config::Config, gateway::Gateway, mock::MockFormat, usage::pricing::PriceTable};
use tokio::sync::oneshot;

const ADMIN: &str = "admin-key-0123456789abcdef";
const JSON_KEY: &str = "json-key-0123456789abcdef";
const STREAM_KEY: &str = "stream-key-0123456789abcdef";

/// Every upstream model of the tests (`upstream-<mock>`) at Claude Sonnet 4.5's prices,
/// USD per million tokens; per token in nano-USD: input 3000, cached 300, cache write
/// 3750, output 15000.
const PRICES: &str =
    "[models.\"upstream-\"]\ninput = 3.0\noutput = 15.0\ncached_input = 0.30\ncache_write = 3.75\n";

/// What every mock reports: 1000 prompt tokens of which 200 read from the cache and 300
/// written to it, 50 completion tokens of which 20 reasoning (as OpenAI counts; each
/// format says what its wire can).
const USAGE: &str = "usage=1000:200:300:50:20";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-usage-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn extra(state: &str) -> String {
    format!(
        "{FAST}[admin]\napi_key = \"{ADMIN}\"\n[state]\n{state}\n\
         [[keys]]\nname = \"json\"\nkey = \"{JSON_KEY}\"\n\
         [[keys]]\nname = \"stream\"\nkey = \"{STREAM_KEY}\"\n"
    )
}

/// A gateway with its ledger open and the test prices live; stops when dropped.
struct Ledgered {
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    _stop: oneshot::Sender<()>,
}

impl Ledgered {
    async fn start(mocks: &[&Mock], state: &str) -> Ledgered {
        let config = Config::parse(&config_for(mocks, &extra(state))).unwrap();
        let gateway = Arc::new(Gateway::new(config).unwrap());
        gateway
            .pricing()
            .replace(PriceTable::parse(PRICES).unwrap());
        gateway.open_ledger().unwrap();
        let (addr, tx) = serve(gateway.clone()).await;
        Ledgered {
            addr,
            gateway,
            _stop: tx,
        }
    }

    async fn chat(&self, key: &str, stream: bool) {
        let resp = within(
            client()
                .post(format!("http://{}/v1/chat/completions", self.addr))
                .bearer_auth(key)
                .json(&hello(stream))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        // Read to the end: a stream's record is written when it ends.
        within(resp.bytes()).await.unwrap();
    }

    async fn usage(&self, query: &str) -> (u16, Value) {
        admin_usage(&self.addr.to_string(), query).await
    }

    /// The report once it counts `requests` (a stream's record lands just after its end).
    async fn usage_once(&self, query: &str, requests: u64) -> Value {
        within(async {
            loop {
                let (status, v) = self.usage(query).await;
                assert_eq!(status, 200, "{v}");
                if v["totals"]["requests"] == requests {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

async fn admin_usage(addr: &str, query: &str) -> (u16, Value) {
    let resp = within(
        client()
            .get(format!("http://{addr}/admin/usage{query}"))
            .bearer_auth(ADMIN)
            .send(),
    )
    .await
    .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The row of `group` in a report.
fn row<'a>(report: &'a Value, field: &str, group: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[field] == group)
        .unwrap_or_else(|| panic!("no row {field}={group} in {report}"))
}

/// Tokens and nano-USD of one request: `[input, cached, write, output, reasoning]` and
/// `[input, cached, write, output, total]`.
fn figures(r: &Value) -> ([u64; 5], [u64; 5]) {
    let t = &r["tokens"];
    let c = &r["cost_nano_usd"];
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap();
    (
        [
            n(t, "input"),
            n(t, "cached_input"),
            n(t, "cache_write"),
            n(t, "output"),
            n(t, "reasoning"),
        ],
        [
            n(c, "input"),
            n(c, "cached_input"),
            n(c, "cache_write"),
            n(c, "output"),
            n(c, "total"),
        ],
    )
}

/// One JSON and one streamed call through a mock of `format`, each under its own key;
/// both rows must hold the golden figures.
async fn golden(format: MockFormat, tokens: [u64; 5], cost: [u64; 5]) {
    let mock = Mock::speaking(format, "m", USAGE).await;
    let dir = temp_dir("golden");
    let gw = Ledgered::start(&[&mock], &format!("dir = {:?}", dir.display().to_string())).await;
    gw.chat(JSON_KEY, false).await;
    gw.chat(STREAM_KEY, true).await;
    let report = gw.usage_once("?group_by=key,model,deployment", 2).await;
    for key in ["json", "stream"] {
        let r = row(&report, "key", key);
        assert_eq!(
            (r["model"].as_str(), r["deployment"].as_str()),
            (Some("gpt-4o-mini"), Some("m/upstream-m")),
            "{r}"
        );
        assert_eq!(figures(r), (tokens, cost), "{format:?} {key}: {r}");
        assert_eq!(
            (
                r["requests"].as_u64(),
                r["errors"].as_u64(),
                r["unpriced"].as_u64()
            ),
            (Some(1), Some(0), Some(0))
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// OpenAI reports prompt_tokens 1000 with cached_tokens 200 (its prompt includes the
// cached tokens; it has no cache writes) and reasoning_tokens 20 of 50:
// input 800 x 3000 = 2_400_000; cached 200 x 300 = 60_000; output 50 x 15000 = 750_000;
// total 3_210_000 nano-USD.
#[tokio::test]
async fn ledger_golden_openai() {
    golden(
        MockFormat::OpenAi,
        [800, 200, 0, 50, 20],
        [2_400_000, 60_000, 0, 750_000, 3_210_000],
    )
    .await;
}

// Anthropic reports input_tokens 500 (excluding the cache), cache_read 200, cache_creation
// 300, output 50 (thinking is not broken out): input 500 x 3000 = 1_500_000; cached 60_000;
// write 300 x 3750 = 1_125_000; output 750_000; total 3_435_000.
#[tokio::test]
async fn ledger_golden_anthropic() {
    golden(
        MockFormat::Anthropic,
        [500, 200, 300, 50, 0],
        [1_500_000, 60_000, 1_125_000, 750_000, 3_435_000],
    )
    .await;
}

// Gemini reports promptTokenCount 1000 (cached content included), cachedContentTokenCount
// 200, candidatesTokenCount 30 and thoughtsTokenCount 20 (output = 30 + 20): as OpenAI.
#[tokio::test]
async fn ledger_golden_gemini() {
    golden(
        MockFormat::Gemini,
        [800, 200, 0, 50, 20],
        [2_400_000, 60_000, 0, 750_000, 3_210_000],
    )
    .await;
}

// Bedrock Converse reports inputTokens 500, cacheReadInputTokens 200, cacheWriteInputTokens
// 300, outputTokens 50: as Anthropic.
#[tokio::test]
async fn ledger_golden_bedrock() {
    golden(
        MockFormat::Bedrock,
        [500, 200, 300, 50, 0],
        [1_500_000, 60_000, 1_125_000, 750_000, 3_435_000],
    )
    .await;
}

// Cohere reports tokens.input_tokens 1000 and output_tokens 50, no cache: input
// 1000 x 3000 = 3_000_000; output 750_000; total 3_750_000.
#[tokio::test]
async fn ledger_golden_cohere() {
    golden(
        MockFormat::Cohere,
        [1000, 0, 0, 50, 0],
        [3_000_000, 0, 0, 750_000, 3_750_000],
    )
    .await;
}

#[tokio::test]
async fn ledger_admin_usage_checks_its_parameters() {
    let mock = Mock::start("m", "").await;
    let dir = temp_dir("params");
    let gw = Ledgered::start(&[&mock], &format!("dir = {:?}", dir.display().to_string())).await;
    gw.chat(JSON_KEY, false).await;
    // Defaults: the last 24 h, one row of totals.
    let all = gw.usage_once("", 1).await;
    assert_eq!(all["object"], "usage.report");
    assert_eq!(all["rows"].as_array().unwrap().len(), 1);
    assert_eq!(all["group_by"], json!([]));
    // A range that ends before the call: nothing.
    let (s, old) = gw.usage("?from=2020-01-01T00:00:00Z&to=1577923200").await;
    assert_eq!((s, old["totals"]["requests"].as_u64()), (200, Some(0)));
    let (s, hourly) = gw.usage("?group_by=hour,model").await;
    assert_eq!(s, 200);
    assert!(
        hourly["rows"][0]["hour"]
            .as_str()
            .unwrap()
            .ends_with(":00:00Z"),
        "{hourly}"
    );
    for (query, param) in [
        ("?from=yesterday", "from"),
        ("?to=2025-02-30T00:00:00Z", "to"),
        ("?group_by=colour", "group_by"),
        ("?from=200&to=100", "from"),
        ("?limit=5", "query"),
    ] {
        let (s, e) = gw.usage(query).await;
        assert_eq!(s, 400, "{query}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert_eq!(e["error"]["param"], param, "{query}: {e}");
    }
    let resp = client()
        .get(format!("http://{}/admin/usage", gw.addr))
        .bearer_auth(JSON_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(gw.gateway.ledger().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn ledger_in_redis_adds_up_across_two_gateways() {
    let redis = RedisServer::start();
    let mock = Mock::speaking(MockFormat::Anthropic, "m", USAGE).await;
    let state = format!("redis_url = \"{}\"", redis.url());
    let a = Ledgered::start(&[&mock], &state).await;
    let b = Ledgered::start(&[&mock], &state).await;
    a.chat(JSON_KEY, false).await;
    b.chat(JSON_KEY, true).await;
    b.chat(STREAM_KEY, false).await;
    // b's writer flushes within a second by itself; flushing it now keeps the test short.
    within(async {
        loop {
            b.gateway.ledger().unwrap().flush().await.unwrap();
            let (_, v) = a.usage("?group_by=key").await;
            if v["totals"]["requests"] == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let report = a.usage_once("?group_by=key", 3).await;
    // Two calls under `json` (one per gateway) and one under `stream`, each the Anthropic
    // golden figures.
    let json = row(&report, "key", "json");
    assert_eq!(
        figures(json),
        (
            [1000, 400, 600, 100, 0],
            [3_000_000, 120_000, 2_250_000, 1_500_000, 6_870_000]
        )
    );
    assert_eq!(report["totals"]["cost_nano_usd"]["total"], 3 * 3_435_000);
    // The layout the docs describe.
    let hours = redis
        .cli(&["ZRANGE", "switchyard:usage:hours", "0", "-1"])
        .unwrap();
    let bucket = format!("switchyard:usage:{}", hours.lines().next().unwrap());
    let writes = redis.cli(&[
        "HGET",
        &bucket,
        "json|gpt-4o-mini|m/upstream-m|cache_write_tokens",
    ]);
    assert_eq!(writes.as_deref(), Some("600"));
    let ttl: i64 = redis.cli(&["TTL", &bucket]).unwrap().parse().unwrap();
    assert!(ttl > 399 * 86_400, "{ttl}");
}

#[tokio::test]
async fn ledger_batch_retried_on_redis_after_a_lost_answer_counts_once() {
    use switchyard::{
        config::{Secret, StateConfig},
        state::State,
        usage::{
            cost::{Cost, Tokens},
            ledger::{Batch, Query, Slot, Store, Sums, calendar},
        },
    };
    let redis = RedisServer::start();
    let state = State::new(&StateConfig {
        redis_url: Some(Secret::new(redis.url())),
        ..StateConfig::default()
    })
    .unwrap();
    let store = Store::Redis(Arc::new(state));
    let hour = calendar::hour_of(calendar::now());
    // Past 2^53, where a Lua double would round or print in exponent form.
    let big: u64 = (1 << 53) + 1;
    let batch = |id: &str| Batch {
        id: id.to_owned(),
        slots: vec![(
            Slot {
                hour,
                key: Arc::from("k|1"),
                model: Arc::from("m"),
                deployment: Arc::from("p/x"),
            },
            Sums {
                requests: 2,
                errors: 1,
                unpriced: 0,
                tokens: Tokens {
                    input: 7,
                    ..Tokens::default()
                },
                cost: Cost {
                    input: big,
                    total: big,
                    ..Cost::default()
                },
            },
        )],
    };
    let totals = || async {
        store
            .report(Query {
                from: hour,
                to: hour + 3600,
                group_by: vec![],
            })
            .await
            .unwrap()
            .totals
    };
    // Applied, then sent again as a retry does when the first answer was lost.
    store.add(&batch("w-1")).await.unwrap();
    store.add(&batch("w-1")).await.unwrap();
    let once = totals().await;
    assert_eq!((once.requests, once.errors, once.unpriced), (2, 1, 0));
    assert_eq!((once.tokens.input, once.cost.total), (7, big));
    // Another batch with the same sums is another batch.
    store.add(&batch("w-2")).await.unwrap();
    let twice = totals().await;
    assert_eq!((twice.requests, twice.cost.input), (4, 2 * big));
    // The marker expires after a day; zero components were never written.
    let ttl: i64 = redis
        .cli(&["TTL", "switchyard:usage:batch:w-1"])
        .unwrap()
        .parse()
        .unwrap();
    assert!((86_000..=86_400).contains(&ttl), "{ttl}");
    let bucket = format!("switchyard:usage:{}", calendar::bucket_name(hour));
    let fields = redis.cli(&["HKEYS", &bucket]).unwrap();
    assert!(!fields.contains("unpriced"), "{fields}");
    assert!(fields.contains("k%7C1|m|p/x|requests"), "{fields}");
    let ttl: i64 = redis.cli(&["TTL", &bucket]).unwrap().parse().unwrap();
    assert!(ttl > 399 * 86_400, "{ttl}");
}

/// Stops a served gateway as an operator does (SIGTERM) and waits for it to exit.
fn terminate(served: &mut Served) {
    let pid = served.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..500 {
        if served.child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the gateway did not exit within 10 s of SIGTERM");
}

#[tokio::test]
async fn ledger_survives_a_restart_and_the_usage_command_prints_it() {
    let mock = Mock::speaking(MockFormat::OpenAi, "m", "usage=1000:200:0:50:20").await;
    let dir = temp_dir("restart");
    std::fs::write(dir.join("prices.toml"), PRICES).unwrap();
    let config = config_for(
        &[&mock],
        &format!(
            "{}[pricing]\nsource = \"prices.toml\"\n",
            extra("dir = \"data\"")
        ),
    );
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let args = ["--config", "switchyard.toml"];
    let mut first = Served::start(&args, &dir);
    let resp = within(
        client()
            .post(format!("http://{}/v1/chat/completions", first.http))
            .bearer_auth(JSON_KEY)
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    // The log line's cost is the ledger's: 3_210_000 nano-USD (see ledger_golden_openai).
    let line = first.wait_for("\"cost_usd\"");
    let log: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(log["cost_usd"], json!(0.00321), "{line}");
    assert_eq!(log["cost_cached_input_usd"], json!(0.00006), "{line}");
    assert_eq!(log["reasoning_tokens"], json!(20), "{line}");
    // SIGTERM: the writer flushes what it holds before the process exits.
    terminate(&mut first);
    assert!(dir.join("data/usage.sqlite3").exists());
    // The command reads the file with no gateway running.
    let out = std::process::Command::new(common::process::BIN)
        .args([
            "usage",
            "--config",
            "switchyard.toml",
            "--by",
            "key,model",
            "--since",
            "2h",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = table.lines().collect();
    let words = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>();
    assert_eq!(
        words(1),
        [
            "KEY",
            "MODEL",
            "REQUESTS",
            "ERRORS",
            "INPUT",
            "CACHED",
            "CACHE_WRITE",
            "OUTPUT",
            "REASONING",
            "COST_USD"
        ],
        "{table}"
    );
    assert_eq!(
        words(2),
        [
            "json",
            "gpt-4o-mini",
            "1",
            "0",
            "800",
            "200",
            "0",
            "50",
            "20",
            "0.003210"
        ],
        "{table}"
    );
    assert_eq!(words(3)[0], "TOTAL", "{table}");
    // Aligned: every line of the table is as wide as its header.
    assert!(
        lines[2..].iter().all(|l| l.len() == lines[1].len()),
        "{table}"
    );
    // Restarted on the same state.dir: the first run's row is there, and adds up.
    let second = Served::start(&args, &dir);
    let (s, report) = admin_usage(&second.http, "?group_by=key").await;
    assert_eq!(s, 200);
    assert_eq!(row(&report, "key", "json")["requests"], 1, "{report}");
    let resp = within(
        client()
            .post(format!("http://{}/v1/chat/completions", second.http))
            .bearer_auth(JSON_KEY)
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, report) = admin_usage(&second.http, "?group_by=key").await;
    assert_eq!(row(&report, "key", "json")["requests"], 2, "{report}");
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}
