//! The `switchyard` command: serve, check-config, route, routes, usage, healthcheck, mock.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use switchyard::{
    auth::CallerHeaders,
    config::{self, Config, EmbeddedDefault},
    gateway::Gateway,
    mock::{self, Fault, MockFormat, MockOptions},
    reload, routes,
    server::{self, Listeners},
    telemetry,
    usage::pricing::{self, PricingSource},
};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "A self-hosted AI API gateway")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway (the default). Without --config, uses ./switchyard.toml when it
    /// exists, else the embedded default.
    Serve(ServeArgs),
    /// Validate a config file: exit 0 when valid, else name the bad key and why.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Show how a request would be routed: the candidates, what each hard filter removed
    /// and why, the policy's order and the time it took.
    Route(RouteArgs),
    /// Live route overrides in the Redis of the config's `state.redis_url`: every replica
    /// applies a change within a second.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Print the usage ledger's sums as a table: requests, errors, tokens and cost by
    /// component. Reads the ledger (SQLite under state.dir, or Redis when the config has
    /// state.redis_url) directly; no running gateway is needed.
    Usage(UsageArgs),
    /// Check that a running gateway answers: GET the URL (default its /healthz) and exit 0
    /// on a 2xx answer within the timeout, else 1. For container health checks, where the
    /// image has no shell or curl.
    Healthcheck {
        /// The URL to get.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// With an https URL: accept any certificate (the gateway's own, checked on
        /// loopback, whose certificate may not name 127.0.0.1 or chain to a known root).
        #[arg(long)]
        insecure: bool,
    },
    /// Run a simulated provider speaking one wire format (see --format).
    Mock {
        /// Where to listen (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:9090")]
        addr: String,
        /// A fault spec applied to every request without an x-mock-fault header,
        /// e.g. `status=503` or `latency_ms=200,cut_after_chunks=3`. `PUT /_mock/fault`
        /// with a spec as the body replaces it while the mock serves.
        #[arg(long, default_value = "")]
        fault: String,
        /// A name shown in answers.
        #[arg(long, default_value = "")]
        name: String,
        /// The wire format: openai, anthropic, azure, gemini, cohere or bedrock.
        #[arg(long, default_value = "openai")]
        format: String,
    },
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// Override MODEL's deployment order (a subset of its configured deployments).
    Set {
        model: String,
        /// `provider/model` ids, comma-separated, in the order to try them.
        deployments: String,
        /// Route with this policy instead of the config's.
        #[arg(long)]
        policy: Option<String>,
        /// The config file (its `state.redis_url`, and the catalog to validate against).
        #[arg(long)]
        config: PathBuf,
    },
    /// Show the override of MODEL, or every override.
    Get {
        model: Option<String>,
        #[arg(long)]
        config: PathBuf,
    },
    /// Remove MODEL's override: the configured order again.
    Clear {
        model: String,
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
struct RouteArgs {
    /// Explain the decision (the only mode so far).
    #[arg(long)]
    explain: bool,
    /// The config file.
    #[arg(long)]
    config: PathBuf,
    /// A chat-completions request body (JSON).
    #[arg(long)]
    request: PathBuf,
    /// Route as this configured key (by name).
    #[arg(long)]
    key: Option<String>,
    /// A request header, `name: value` (`x-security-level`, `x-route-*`); repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct UsageArgs {
    /// The config file (its [state] says where the ledger is).
    #[arg(long)]
    config: PathBuf,
    /// Group by these, comma-separated: key, model, deployment, hour.
    #[arg(long, default_value = "key,model")]
    by: String,
    /// How far back: e.g. 30m, 24h, 7d.
    #[arg(long, default_value = "24h")]
    since: String,
    /// Print the JSON that GET /admin/usage answers instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// The config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override server.http_addr.
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Override server.grpc_addr.
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
            Command::Serve(args) => serve(args).await,
            Command::CheckConfig { file } => check_config(&file).await,
            Command::Route(args) => explain_route(&args).await,
            Command::Routes { command } => routes_command(command).await,
            Command::Usage(args) => usage(&args).await,
            Command::Healthcheck {
                url,
                timeout_ms,
                insecure,
            } => healthcheck(&url, timeout_ms, insecure).await,
            Command::Mock {
                addr,
                fault,
                name,
                format,
            } => run_mock(&addr, &fault, name, &format).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("switchyard: {message}");
            ExitCode::FAILURE
        }
    }
}

#[expect(
    clippy::print_stdout,
    reason = "the command's output is for the person running it"
)]
async fn check_config(file: &std::path::Path) -> Result<(), String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    // What `serve` would refuse too: a policy that does not compile or fails its
    // self-check (building the gateway) and a bad pricing source (config validation). A
    // price file is also read and parsed, by the refresh `serve` would run (serve would
    // only log a bad one and keep the built-in prices); a URL is not fetched.
    let (source, providers, models) = (
        config.pricing_source(),
        config.providers.len(),
        config.models.len(),
    );
    // The TLS pair, as `serve` loads it at start (a missing file, a key that does not
    // match the certificate).
    if let Some(files) = &config.network.tls {
        switchyard::network::tls::Tls::start(files, &config.dir)?;
    }
    let gateway = Gateway::new(config).map_err(startup_error)?;
    let prices = match source {
        None => "built-in prices".to_owned(),
        Some(PricingSource::Url(url)) => format!("prices from {url}, not fetched"),
        Some(source @ PricingSource::File(_)) => {
            let (read, client) = (gateway.pricing(), gateway.client());
            pricing::refresh_once(read, &source, &mut Default::default(), client)
                .await
                .map_err(|e| format!("pricing.source {e}"))?;
            format!("{} prices from {source}", read.current().len())
        }
    };
    let state = match gateway.state().redis() {
        None => "state in process".to_owned(),
        // Not a config error: the gateway starts without it and reconnects by itself.
        Some(redis) => match redis.ping().await {
            Ok(()) => "Redis reachable".to_owned(),
            Err(e) => format!(
                "Redis NOT reachable now ({e}): limits follow state.on_redis_error until it is"
            ),
        },
    };
    println!(
        "{}: ok ({providers} providers, {models} models, {prices}, {state})",
        file.display()
    );
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the command's output is for the person running it"
)]
async fn explain_route(args: &RouteArgs) -> Result<(), String> {
    if !args.explain {
        return Err("`route` needs --explain".to_owned());
    }
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let text =
        std::fs::read(&args.request).map_err(|e| format!("{}: {e}", args.request.display()))?;
    let request = switchyard::api::openai::chat::parse_request(&text)
        .map_err(|e| format!("{}: {e}", args.request.display()))?;
    let mut pairs = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header `{h}`: expected `name: value`"))?;
        pairs.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let headers = CallerHeaders::collect(pairs.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    let caller = switchyard::api::admin::explain_caller(&config.keys, args.key.as_deref(), headers)
        .map_err(|e| e.to_string())?;
    // The order live replicas use: the config's, with the overrides in its Redis.
    let overrides = routes::command::read_all(&config).await;
    let gateway = Gateway::new(config).map_err(startup_error)?;
    match overrides {
        Ok(all) => {
            let all = all
                .into_iter()
                .map(|(model, route)| {
                    let origin = routes::Origin::Redis;
                    (model, routes::Applied { route, origin })
                })
                .collect();
            gateway.replace_routes(all).map_err(startup_error)?;
        }
        Err(e) => {
            eprintln!("switchyard: route overrides not read ({e}); showing the config's order")
        }
    }
    let report = gateway.live().catalog.explain(&request, &caller);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", switchyard::routing::explain_text(&report));
    }
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the command's output is for the person running it"
)]
async fn routes_command(command: RoutesCommand) -> Result<(), String> {
    let text = match command {
        RoutesCommand::Set {
            model,
            deployments,
            policy,
            config,
        } => routes::command::set(&config, &model, &deployments, policy).await?,
        RoutesCommand::Get { model, config } => {
            routes::command::get(&config, model.as_deref()).await?
        }
        RoutesCommand::Clear { model, config } => routes::command::clear(&config, &model).await?,
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the command's output is for the person running it"
)]
async fn usage(args: &UsageArgs) -> Result<(), String> {
    use switchyard::usage::ledger::{self, Group, Query, calendar};
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let span = calendar::parse_span(&args.since).map_err(|e| format!("--since {e}"))?;
    let group_by = Group::parse_list(&args.by).map_err(|e| format!("--by: {e}"))?;
    let to = calendar::now();
    let from = to - i64::try_from(span.as_secs()).unwrap_or(i64::MAX / 2);
    let query = Query { from, to, group_by };
    let store = match &config.state.redis_url {
        Some(_) => {
            let state = switchyard::state::State::new(&config.state)?;
            ledger::Store::Redis(Arc::new(state))
        }
        None => ledger::Store::Sqlite(Arc::new(ledger::sqlite::SqliteLedger::open_read_only(
            &config.state_dir(),
        )?)),
    };
    let report = store.report(query).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        );
    } else {
        println!(
            "usage from {} to {} ({})",
            calendar::rfc3339(report.query.from),
            calendar::rfc3339(report.query.to),
            store.describe()
        );
        print!("{}", ledger::render_table(&report));
    }
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the command's output is for the person (or container runtime) running it"
)]
async fn healthcheck(url: &str, timeout_ms: u64, insecure: bool) -> Result<(), String> {
    telemetry::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(timeout_ms))
        .tls_danger_accept_invalid_certs(insecure)
        // A proxy from the environment would answer for the gateway.
        .no_proxy()
        .build()
        .map_err(|e| format!("healthcheck: {e}"))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("healthcheck {url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("healthcheck {url}: {status}"));
    }
    println!("{url}: {status}");
    Ok(())
}

/// A gateway that cannot be built: internal details are the operator's to see here.
fn startup_error(e: switchyard::error::Error) -> String {
    match e {
        switchyard::error::Error::Internal { detail } => detail,
        other => other.to_string(),
    }
}

#[expect(
    clippy::print_stdout,
    reason = "startup banner for the person running it"
)]
async fn serve(args: ServeArgs) -> Result<(), String> {
    let _log_guard = telemetry::init_logging();
    let local = PathBuf::from("switchyard.toml");
    let config_file = args
        .config
        .clone()
        .or_else(|| local.exists().then_some(local));
    let (mut config, source) = match &config_file {
        Some(path) => (
            Config::load(path).map_err(|e| e.to_string())?,
            path.display().to_string(),
        ),
        None => match config::embedded_default(|k| std::env::var(k).ok())
            .map_err(|e| e.to_string())?
        {
            EmbeddedDefault::Real(c) => (
                *c,
                "embedded default (provider keys from the environment)".into(),
            ),
            EmbeddedDefault::Simulated => {
                let primary = mock::spawn(
                    "127.0.0.1:0",
                    MockOptions {
                        name: "sim-primary".into(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| format!("starting the simulated providers: {e}"))?;
                let backup = mock::spawn(
                    "127.0.0.1:0",
                    MockOptions {
                        name: "sim-backup".into(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| format!("starting the simulated providers: {e}"))?;
                (
                    config::simulated(primary, backup).map_err(|e| e.to_string())?,
                    "embedded default with simulated providers (no provider API keys found)".into(),
                )
            }
        },
    };
    if let Some(a) = args.http_addr {
        config.server.http_addr = a;
    }
    if let Some(a) = args.grpc_addr {
        config.server.grpc_addr = Some(a);
    }
    let http = TcpListener::bind(config.server.http_addr)
        .await
        .map_err(|e| format!("binding {}: {e}", config.server.http_addr))?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let grpc = match config.server.grpc_addr {
        Some(a) if a != config.server.http_addr => Some(
            TcpListener::bind(a)
                .await
                .map_err(|e| format!("binding {a}: {e}"))?,
        ),
        _ => None,
    };
    let grpc_addr = match &grpc {
        Some(l) => l.local_addr().map_err(|e| e.to_string())?,
        None => http_addr,
    };
    let first_model = config
        .models
        .first()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let gateway = Arc::new(Gateway::new(config).map_err(startup_error)?);
    // Every loop is the gateway's: `server::run` stops them all when it ends.
    let background = gateway.background().clone();
    if let Some(path) = config_file {
        gateway.set_config_file(path);
        // Both are in place before the banner: a save or SIGHUP after it is never lost.
        match reload::watch(gateway.clone(), background.token().clone()) {
            Ok(task) => background.spawn(|_| task),
            Err(e) => tracing::warn!(
                error = %e,
                "config file not watched; reload with SIGHUP or /admin/reload"
            ),
        }
        #[cfg(unix)]
        match reload::on_sighup(gateway.clone(), background.token().clone()) {
            Ok(task) => background.spawn(|_| task),
            Err(e) => tracing::warn!(error = %e, "reload with file changes or /admin/reload"),
        }
    }
    // Refreshes prices from `[pricing]`, and follows its changes through reloads.
    gateway.follow_pricing();
    if let Some(redis) = gateway.state().redis() {
        // Bounded by state.redis_timeout_ms; the gateway serves either way.
        match redis.ping().await {
            Ok(()) => tracing::info!("state in Redis: reachable"),
            Err(e) => tracing::warn!(
                error = %e,
                "state in Redis: not reachable now; reconnecting on use, limits follow state.on_redis_error meanwhile"
            ),
        }
    }
    // Route overrides in Redis: read before the banner, so the first request routes with
    // them, then followed live (the subscriber reads them again once subscribed).
    if gateway.state().redis().is_some() {
        match routes::follow::sync(&gateway).await {
            Ok(n) => tracing::info!(overrides = n, "route overrides read from Redis"),
            Err(error) => {
                tracing::warn!(%error, "route overrides not read at start; the subscriber retries")
            }
        }
        let follower = gateway.clone();
        background.spawn(|stop| routes::follow::run(follower, stop));
    }
    let ledger = gateway
        .open_ledger()
        .map_err(|e| format!("usage ledger: {e}"))?;
    tracing::info!(store = %ledger.store().describe(), "usage ledger open");
    println!("switchyard: config from {source}");
    println!("switchyard listening: http={http_addr} grpc={grpc_addr}");
    println!(
        "try: curl -s http://{http_addr}/v1/chat/completions -H 'content-type: application/json' \
         -d '{{\"model\":\"{first_model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"
    );
    server::run(Listeners { http, grpc }, gateway, shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))
}

#[expect(
    clippy::print_stdout,
    reason = "startup banner for the person running it"
)]
async fn run_mock(addr: &str, fault: &str, name: String, format: &str) -> Result<(), String> {
    let fault = Fault::parse(fault).map_err(|e| format!("--fault: {e}"))?;
    let format = MockFormat::parse(format).map_err(|e| format!("--format: {e}"))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let base = match format {
        MockFormat::OpenAi => format!("http://{local}/v1"),
        MockFormat::Anthropic
        | MockFormat::Azure
        | MockFormat::Gemini
        | MockFormat::Cohere
        | MockFormat::Bedrock => format!("http://{local}"),
    };
    println!("switchyard mock listening: {base}");
    let options = MockOptions {
        fault,
        name,
        format,
    };
    mock::serve(listener, options, shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
