//! Hot reload over real sockets: reloads under load lose no request, a broken change keeps
//! the old config serving, a saved file is picked up by the watcher (also when Kubernetes
//! swaps a mounted ConfigMap), and a stream in flight finishes on the snapshot it started
//! with.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;
use serde_json::json;
use switchyard::{config::Config, gateway::Gateway, reload};
use tokio::{sync::oneshot, time::Instant};

const ADMIN_KEY: &str = "admin-key-0123456789";

/// A gateway started from a config file, as `switchyard serve --config` does.
struct FileGateway {
    addr: std::net::SocketAddr,
    gateway: Arc<Gateway>,
    dir: PathBuf,
    _stop: oneshot::Sender<()>,
}

impl FileGateway {
    async fn start(text: &str) -> FileGateway {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-reload-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(dir.join("scripts")).unwrap();
        let path = dir.join("switchyard.toml");
        std::fs::write(&path, text).unwrap();
        FileGateway::serving(dir, path).await
    }

    /// A gateway serving the config file at `path`, in `dir`.
    async fn serving(dir: PathBuf, path: PathBuf) -> FileGateway {
        let gateway = Arc::new(Gateway::new(Config::load(&path).unwrap()).unwrap());
        gateway.set_config_file(path);
        let (addr, tx) = serve(gateway.clone()).await;
        FileGateway {
            addr,
            gateway,
            dir,
            _stop: tx,
        }
    }

    /// Saves the config the way editors do: a new file renamed over the old one.
    fn save(&self, text: &str) {
        save_as(&self.dir.join("switchyard.toml"), text);
    }

    async fn admin_reload(&self) -> reqwest::Response {
        within(
            client()
                .post(format!("http://{}/admin/reload", self.addr))
                .bearer_auth(ADMIN_KEY)
                .send(),
        )
        .await
        .unwrap()
    }

    async fn served_by(&self) -> String {
        let resp = within(
            client()
                .post(format!("http://{}/v1/chat/completions", self.addr))
                .json(&hello(false))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        header(&resp, "x-switchyard-provider").to_owned()
    }
}

fn save_as(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Two mocks behind `gpt-4o-mini`, `a` dearer than `b`, routed by `policy`.
fn config(a: &Mock, b: &Mock, policy: &str) -> String {
    let base = config_for(&[a, b], FAST);
    let base = base.replace(
        &format!(
            "{{ provider = \"{}\", model = \"upstream-{}\" }}",
            a.name, a.name
        ),
        &format!(
            "{{ provider = \"{}\", model = \"upstream-{}\", price_in = 5.0, price_out = 20.0 }}",
            a.name, a.name
        ),
    );
    let base = base.replace(
        &format!(
            "{{ provider = \"{}\", model = \"upstream-{}\" }}",
            b.name, b.name
        ),
        &format!(
            "{{ provider = \"{}\", model = \"upstream-{}\", price_in = 0.5, price_out = 2.0 }}",
            b.name, b.name
        ),
    );
    format!(
        "[routing]\nscripts_dir = \"scripts\"\n[admin]\napi_key = \"{ADMIN_KEY}\"\n{}\npolicy = \"{policy}\"\n",
        base.trim_end()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_load_fail_no_request() {
    let (a, b) = (Mock::start("a", "").await, Mock::start("b", "").await);
    let gw = FileGateway::start(&config(&a, &b, "failover")).await;
    // A script of our own too, so every reload loads and self-checks Lua.
    std::fs::write(
        gw.dir.join("scripts/reverse.lua"),
        "function route(r, c)\n  local ids = {}\n  for i = #c, 1, -1 do ids[#ids + 1] = c[i].id end\n  return ids\nend\n",
    )
    .unwrap();
    std::fs::write(
        gw.dir.join("scripts/reverse.cases.json"),
        r#"[{ "name": "reversed", "candidates": [{"id": "x/1"}, {"id": "y/2"}], "expect": ["y/2", "x/1"] }]"#,
    )
    .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let url = format!("http://{}/v1/chat/completions", gw.addr);
    let load: Vec<_> = (0..8)
        .map(|i| {
            let (done, ok, failed, url) = (done.clone(), ok.clone(), failed.clone(), url.clone());
            tokio::spawn(async move {
                let client = client();
                while !done.load(Ordering::Relaxed) {
                    let body = hello(i % 2 == 0);
                    let sent = tokio::time::timeout(
                        Duration::from_secs(10),
                        client.post(&url).json(&body).send(),
                    )
                    .await;
                    let good = match sent {
                        Ok(Ok(resp)) if resp.status() == 200 => {
                            tokio::time::timeout(Duration::from_secs(10), resp.bytes())
                                .await
                                .is_ok_and(|b| b.is_ok_and(|b| !b.is_empty()))
                        }
                        _ => false,
                    };
                    let counter = if good { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let policies = ["cost", "failover", "reverse", "static"];
    let started = Instant::now();
    for n in 0..100 {
        gw.save(&config(&a, &b, policies[n % policies.len()]));
        let resp = gw.admin_reload().await;
        assert_eq!(
            resp.status(),
            200,
            "reload {n}: {}",
            resp.text().await.unwrap()
        );
    }
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    for t in load {
        within(t).await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("100 reloads in {took:?} while {ok} requests were served");
    assert_eq!(
        failed, 0,
        "{failed} requests failed during reloads ({ok} served)"
    );
    assert!(ok >= 100, "the load generator barely ran: {ok} requests");
}

#[tokio::test]
async fn a_broken_change_is_rejected_and_the_old_config_keeps_serving() {
    let (a, b) = (Mock::start("a", "").await, Mock::start("b", "").await);
    let gw = FileGateway::start(&config(&a, &b, "cost")).await;
    assert_eq!(gw.served_by().await, "b");

    for (what, text) in [
        ("bad TOML", "[[models]\n".to_owned()),
        ("unknown policy", config(&a, &b, "nonesuch")),
        (
            "unknown key",
            format!("{}\nsurprise = 1\n", config(&a, &b, "failover")),
        ),
    ] {
        gw.save(&text);
        let resp = gw.admin_reload().await;
        assert_eq!(resp.status(), 400, "{what}");
        let body: serde_json::Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("reload rejected"), "{what}: {message}");
        assert_eq!(
            gw.served_by().await,
            "b",
            "{what}: the cost policy still routes"
        );
    }

    std::fs::write(
        gw.dir.join("scripts/broken.lua"),
        "function route(r, c) return {",
    )
    .unwrap();
    gw.save(&config(&a, &b, "broken"));
    assert_eq!(gw.admin_reload().await.status(), 400);
    assert_eq!(gw.served_by().await, "b");

    gw.save(&config(&a, &b, "failover"));
    assert_eq!(gw.admin_reload().await.status(), 200);
    assert_eq!(gw.served_by().await, "a");
}

#[tokio::test]
async fn admin_reload_needs_the_admin_key() {
    let (a, b) = (Mock::start("a", "").await, Mock::start("b", "").await);
    let gw = FileGateway::start(&config(&a, &b, "cost")).await;
    let url = format!("http://{}/admin/reload", gw.addr);
    let none = within(client().post(&url).send()).await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = within(client().post(&url).bearer_auth("nope").send())
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let text = wrong.text().await.unwrap();
    assert!(!text.contains(ADMIN_KEY));
    // A wrong method is a 405 for the admin only.
    let get = within(client().get(&url).send()).await.unwrap();
    assert_eq!(get.status(), 401);
    let get = within(client().get(&url).bearer_auth(ADMIN_KEY).send())
        .await
        .unwrap();
    assert_eq!(
        (get.status().as_u16(), header(&get, "allow")),
        (405, "POST")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_file_is_picked_up_by_the_watcher() {
    let (a, b) = (Mock::start("a", "").await, Mock::start("b", "").await);
    let gw = FileGateway::start(&config(&a, &b, "failover")).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let watching = reload::watch(gw.gateway.clone(), stop.clone()).unwrap();
    tokio::spawn(watching);
    assert_eq!(gw.served_by().await, "a");

    let saved = Instant::now();
    gw.save(&config(&a, &b, "cost"));
    let mut served = gw.served_by().await;
    while served != "b" && saved.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        served = gw.served_by().await;
    }
    assert_eq!(served, "b", "the saved change was not picked up");
    println!("a saved change served after {:?}", saved.elapsed());

    // A script change alone reloads too.
    std::fs::write(
        gw.dir.join("scripts/cost.lua"),
        "function route(r, c) return { c[1].id } end",
    )
    .unwrap();
    let saved = Instant::now();
    let mut served = gw.served_by().await;
    while served != "a" && saved.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        served = gw.served_by().await;
    }
    assert_eq!(served, "a", "the saved script was not picked up");
    stop.cancel();
}

/// A folder that Kubernetes fills from a ConfigMap, written the way the kubelet's atomic
/// writer does: each version of the data in a new hidden folder, `..data` a symlink to the
/// current one, and each key a symlink through `..data`. An update never touches the
/// visible files: it writes a new folder, points `..data_tmp` at it, renames `..data_tmp`
/// over `..data` and removes the old folder.
struct ProjectedVolume {
    dir: PathBuf,
    version: u32,
}

impl ProjectedVolume {
    fn new(files: &[(&str, &str)]) -> ProjectedVolume {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-configmap-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = ProjectedVolume { dir, version: 0 };
        volume.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), volume.dir.join(name)).unwrap();
        }
        volume
    }

    fn update(&mut self, files: &[(&str, &str)]) {
        let old = format!("..2026_01_01_00_00_00.{}", self.version);
        self.version += 1;
        let new = format!("..2026_01_01_00_00_00.{}", self.version);
        std::fs::create_dir(self.dir.join(&new)).unwrap();
        for (name, text) in files {
            std::fs::write(self.dir.join(&new).join(name), text).unwrap();
        }
        std::os::unix::fs::symlink(&new, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        if self.version > 1 {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

/// Polls (bounded) until `gw` is served by `want`.
async fn served_by_within(gw: &FileGateway, want: &str, what: &str) {
    let changed = Instant::now();
    let mut served = gw.served_by().await;
    while served != want && changed.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        served = gw.served_by().await;
    }
    assert_eq!(served, want, "{what} was not picked up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_configmap_update_is_picked_up_by_the_watcher() {
    let (a, b) = (Mock::start("a", "").await, Mock::start("b", "").await);
    // The policies sit beside the config, as keys of the same ConfigMap.
    let text =
        |policy| config(&a, &b, policy).replace("scripts_dir = \"scripts\"", "scripts_dir = \".\"");
    let cheapest = "function route(r, c) return { c[2].id, c[1].id } end";
    let first = "function route(r, c) return { c[1].id } end";
    let mut volume = ProjectedVolume::new(&[
        ("switchyard.toml", &text("failover")),
        ("house.lua", cheapest),
    ]);
    let path = volume.dir.join("switchyard.toml");
    let gw = FileGateway::serving(volume.dir.clone(), path).await;
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(reload::watch(gw.gateway.clone(), stop.clone()).unwrap());
    assert_eq!(gw.served_by().await, "a");

    volume.update(&[("switchyard.toml", &text("house")), ("house.lua", cheapest)]);
    served_by_within(&gw, "b", "the updated config").await;

    // A change to a policy alone is the same swap.
    volume.update(&[("switchyard.toml", &text("house")), ("house.lua", first)]);
    served_by_within(&gw, "a", "the updated policy").await;
    stop.cancel();
}

#[tokio::test]
async fn a_stream_in_flight_finishes_on_the_snapshot_it_started_with() {
    let slow = Mock::start("slow", "chunk_delay_ms=30").await;
    let other = Mock::start("other", "").await;
    let gw = FileGateway::start(&config(&slow, &other, "failover")).await;
    let resp = within(
        client()
            .post(format!("http://{}/v1/chat/completions", gw.addr))
            .json(&json!({ "model": "gpt-4o-mini", "stream": true,
                           "messages": [{ "role": "user", "content": "tell me a longer story" }] }))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(header(&resp, "x-switchyard-provider"), "slow");
    // Drop the streaming provider from the config while its stream is still running.
    let without_slow = config_for(&[&other], FAST);
    gw.save(&format!(
        "[admin]\napi_key = \"{ADMIN_KEY}\"\n{without_slow}"
    ));
    assert_eq!(gw.admin_reload().await.status(), 200);
    assert_eq!(gw.served_by().await, "other");
    let events = within(sse_events(resp)).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(!stream_content(&events).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_follows_the_pricing_source_and_removing_it_puts_the_built_in_prices_back() {
    let (a, b) = (Mock::start("a", "").await, Mock::start("b", "").await);
    let base = config(&a, &b, "cost");
    let with_source =
        |file: &str| format!("{base}\n[pricing]\nsource = \"{file}\"\nrefresh_secs = 3600\n");
    let gw = FileGateway::start(&with_source("one.toml")).await;
    for (file, input) in [("one.toml", 1.0), ("two.toml", 2.0)] {
        std::fs::write(
            gw.dir.join(file),
            format!("[models.\"house-model\"]\ninput = {input}\noutput = 9.0\n"),
        )
        .unwrap();
    }
    let prices = gw.gateway.pricing().clone();
    let house = move || prices.lookup("house-model").map(|p| p.input);
    let settles_on = |want: Option<f64>| {
        let house = house.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while house() != want {
                assert!(Instant::now() < deadline, "prices stayed at {:?}", house());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(
        house(),
        None,
        "nothing refreshes before the gateway follows [pricing]"
    );
    gw.gateway.follow_pricing();
    settles_on(Some(1.0)).await;

    // A new source: the refresh restarts on it at once (the interval is an hour).
    gw.save(&with_source("two.toml"));
    assert_eq!(gw.admin_reload().await.status(), 200);
    settles_on(Some(2.0)).await;

    // No source: the refresh stops and the built-in table is live again.
    gw.save(&base);
    assert_eq!(gw.admin_reload().await.status(), 200);
    settles_on(None).await;
    assert!(gw.gateway.pricing().lookup("gpt-4o-mini").is_some());
}
