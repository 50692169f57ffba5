//! The gateway: its live state and what outlives a reload; the request path that runs
//! over it is [`crate::pipeline`].
//!
//! Config-derived state (the catalog and its providers) lives in one [`Live`] snapshot
//! behind an `ArcSwap`: a request takes the snapshot once, at ingress, and finishes on it.
//! Every change to it goes through [`Gateway::rebuild`], one at a time; prices are not
//! part of it.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::{
    alerts::{Alert, Alerter},
    auth::{AuthState, Authenticated, CallerHeaders, Keys, signed::BodyDigest},
    background::Background,
    cache::ResponseCache,
    config::Config,
    error::Error,
    failover::{self, Failed, Served},
    health, limits, providers,
    reload::ReloadRecord,
    routes::{self, Applied, Overrides},
    routing::{Catalog, Route, filter},
    state::State,
    telemetry::recent::{self, Recent, RecentError},
    usage::{
        ledger::{self, Ledger},
        pricing::{self, PriceTable, Pricing, PricingSource},
    },
};

/// Everything built from one config.
pub struct Live {
    pub config: Config,
    pub catalog: Catalog,
    pub keys: Keys,
    /// The config's limits, and the gateway's limiter that counts against them.
    pub rules: limits::Rules,
    pub limiter: Arc<limits::Limiter>,
    /// The models' guard scripts, loaded with the snapshot.
    pub guards: crate::guard::Guards,
}

/// The gateway: a swappable [`Live`] snapshot, the pooled upstream client, what outlives
/// a reload (each deployment's health, the price table), and its background loops.
pub struct Gateway {
    live: ArcSwap<Live>,
    /// Held through each [`Gateway::rebuild`], so two never interleave: a slower one
    /// cannot overwrite a newer snapshot with one built from older state.
    rebuilding: Mutex<()>,
    clients: providers::Clients,
    health: health::Registry,
    pricing: Arc<Pricing>,
    /// The config file, when the gateway was started from one (reloads read it).
    config_file: OnceLock<PathBuf>,
    background: Background,
    alerter: Arc<Alerter>,
    /// Requests being served now (streams until they end), against `server.max_in_flight`.
    in_flight: Arc<AtomicUsize>,
    /// The price refresh, once [`Gateway::follow_pricing`] started following `[pricing]`.
    price_refresh: Mutex<Option<PriceRefresh>>,
    /// Shared state (Redis when configured); fixed for the gateway's life.
    state: Arc<State>,
    /// Counts against the limits and budgets; its counters outlive reloads.
    limiter: Arc<limits::Limiter>,
    /// Live route overrides ([`crate::routes`]), applied to every snapshot built.
    routes: Overrides,
    /// The response cache (in process, or in `state`'s Redis); outlives reloads.
    cache: ResponseCache,
    /// The Responses API's stored responses (`[responses]`, or Redis).
    responses: crate::api::responses::store::ResponseStore,
    /// The usage ledger, once [`Gateway::open_ledger`] opened it.
    ledger: OnceLock<Ledger>,
    /// When the gateway was built.
    started: tokio::time::Instant,
    /// The last reloads and the last refused requests, for the status page.
    reloads: Recent<ReloadRecord>,
    errors: Recent<RecentError>,
    /// The OTLP trace exporter (`[telemetry] otlp_endpoint`); fixed for the gateway's
    /// life, like `[state]`.
    tracer: Option<Arc<crate::telemetry::otlp::Tracer>>,
    /// The `[telemetry]` the tracer was started with.
    telemetry: crate::config::TelemetryConfig,
    /// The signatures of signed requests seen inside their window and the identity
    /// providers' key sets; outlive reloads.
    auth: Arc<AuthState>,
}

/// What the running price refresh was started from, and its stop.
struct PriceRefresh {
    source: Option<PricingSource>,
    every: Duration,
    stop: CancellationToken,
}

/// One request counted in the gateway's in-flight figure until dropped.
pub struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gateway {
    /// Builds the gateway and its providers from a validated config. Its background loops
    /// (the alert sender here; the server adds its own) run until [`Gateway::background`]
    /// is stopped, which [`crate::server::run`] does when it ends.
    pub fn new(config: Config) -> Result<Gateway, Error> {
        let clients = providers::Clients::new(config.failover.connect_timeout)
            .map_err(|detail| Error::Internal { detail })?;
        let client = clients.default_client().clone();
        let health = health::Registry::new(config.breaker);
        let background = Background::new();
        let (alerter, deliveries) = Alerter::new(config.alerts.clone(), client.clone());
        // Webhooks need a runtime; without one (a tool building a gateway to inspect it)
        // alerts are only counted.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            background.spawn_on(&runtime, |stop| deliveries.run(stop));
        }
        let on_open = alerter.clone();
        health.on_open(Arc::new(move |id: &str, reason: &str| {
            on_open.raise(Alert::new(
                "breaker_open",
                id,
                format!("the circuit of {id} opened ({reason})"),
            ));
        }));
        let pricing = Arc::new(Pricing::new(PriceTable::builtin()));
        let state =
            Arc::new(State::new(&config.state).map_err(|detail| Error::Internal { detail })?);
        let cache = ResponseCache::new(&config.cache, &state, background.clone());
        let limiter = Arc::new(limits::Limiter::new(state.clone(), background.clone()));
        let telemetry = config.telemetry.clone();
        let responses = crate::api::responses::store::ResponseStore::new(&config.responses, &state);
        let tracer = crate::telemetry::otlp::Tracer::start(&telemetry, client.clone(), &background);
        let auth = Arc::new(AuthState::new(Some(state.clone())));
        let live = Live::build(
            config,
            &clients,
            &health,
            &pricing,
            &limiter,
            &auth,
            &Default::default(),
        )?;
        Ok(Gateway {
            live: ArcSwap::from_pointee(live),
            rebuilding: Mutex::new(()),
            clients,
            health,
            pricing,
            config_file: OnceLock::new(),
            background,
            alerter,
            in_flight: Arc::default(),
            price_refresh: Mutex::new(None),
            state,
            limiter,
            routes: Overrides::default(),
            cache,
            responses,
            ledger: OnceLock::new(),
            started: tokio::time::Instant::now(),
            reloads: Recent::new(recent::RELOADS_KEPT),
            errors: Recent::new(recent::ERRORS_KEPT),
            tracer,
            telemetry,
            auth,
        })
    }

    /// Names the file this gateway's config came from, so it can be reloaded
    /// ([`crate::reload::reload`]). Set once.
    pub fn set_config_file(&self, path: PathBuf) {
        let _ = self.config_file.set(path);
    }

    /// The config file, if the gateway was started from one.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.get().map(PathBuf::as_path)
    }

    /// The current snapshot.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// A look at the current snapshot without taking a reference count on it, for code
    /// that reads it and lets go before any `.await` (the network guard of every request).
    pub fn peek(&self) -> arc_swap::Guard<Arc<Live>> {
        self.live.load()
    }

    /// The one way the live state changes. Under the rebuild lock, `next` derives the new
    /// config from the running snapshot; a whole new snapshot is built from it (providers,
    /// policies, each policy self-checked) and swapped in, and the new snapshot is
    /// returned. In-flight requests finish on theirs. On error the old snapshot keeps
    /// serving.
    pub fn rebuild(
        &self,
        next: impl FnOnce(&Live) -> Result<Config, Error>,
    ) -> Result<Arc<Live>, Error> {
        let _one_at_a_time = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut config = next(&self.live.load())?;
        if config.state != *self.state.config() {
            // Like the listen addresses: the running state stays, the rest applies.
            tracing::warn!("[state] cannot change while serving; restart to apply it");
            config.state = self.state.config().clone();
        }
        if config.telemetry != self.telemetry {
            // The exporter keeps running as started: its queue and task outlive reloads.
            tracing::warn!("[telemetry] cannot change while serving; restart to apply it");
            config.telemetry = self.telemetry.clone();
        }
        let live = Arc::new(Live::build(
            config,
            &self.clients,
            &self.health,
            &self.pricing,
            &self.limiter,
            &self.auth,
            &self.routes.snapshot(),
        )?);
        self.health.set_config(live.config.breaker);
        self.alerter.set_config(live.config.alerts.clone());
        self.cache.configure(&live.config.cache);
        self.live.store(live.clone());
        self.apply_pricing(&live.config, false);
        Ok(live)
    }

    /// Starts refreshing prices from the live config's `[pricing]` source, and from then
    /// on follows it through every rebuild: a new source or interval restarts the refresh,
    /// a removed source stops it and puts the built-in table back. A gateway that never
    /// calls this (a tool, most tests) keeps the built-in prices and starts nothing.
    pub fn follow_pricing(&self) {
        self.apply_pricing(&self.live().config, true);
    }

    fn apply_pricing(&self, config: &Config, start: bool) {
        let mut running = self
            .price_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (source, every) = (config.pricing_source(), config.pricing.refresh);
        match running.as_ref() {
            None if !start => return,
            Some(r) if r.source == source && r.every == every => return,
            Some(r) => {
                r.stop.cancel();
                if source.is_none() && r.source.is_some() {
                    self.pricing.replace(PriceTable::builtin());
                    tracing::info!("pricing.source removed; the built-in prices are live again");
                }
            }
            None => {}
        }
        let stop = self.background.token().child_token();
        if let (Some(source), Ok(runtime)) = (&source, tokio::runtime::Handle::try_current()) {
            let (prices, client) = (self.pricing.clone(), self.client().clone());
            let (source, loop_stop) = (source.clone(), stop.clone());
            self.background.spawn_on(&runtime, move |_| {
                pricing::refresh_loop(prices, source, every, client, loop_stop)
            });
        }
        *running = Some(PriceRefresh {
            source,
            every,
            stop,
        });
    }

    /// Rebuilds the snapshot from `config` ([`Gateway::rebuild`]).
    pub fn reload(&self, config: Config) -> Result<(), Error> {
        self.rebuild(|_| Ok(config)).map(drop)
    }

    /// The live route overrides (a copy of them: [`Overrides::snapshot`]).
    pub fn routes(&self) -> &Overrides {
        &self.routes
    }

    /// Sets (`Some`, validated against the running config first) or clears `model`'s
    /// route override in this process, and rebuilds when that changed anything. Shared
    /// overrides go through Redis first ([`crate::routes::shared`]); this applies them.
    pub fn set_route(&self, model: &str, applied: Option<Applied>) -> Result<(), Error> {
        if let Some(a) = &applied {
            routes::validate(&self.live().config, model, &a.route).map_err(|message| {
                Error::BadRequest {
                    message: format!("route override for `{model}` refused: {message}"),
                    param: None,
                }
            })?;
        }
        self.apply_route(model, applied)
    }

    /// As [`Gateway::set_route`] without the check: for overrides read from Redis, which
    /// are held even when they do not fit this replica's config (each rebuild logs and
    /// skips them; a later config that fits applies them).
    pub fn apply_route(&self, model: &str, applied: Option<Applied>) -> Result<(), Error> {
        if self.routes.set(model, applied) {
            self.rebuild(|running| Ok(running.config.clone()))?;
        }
        Ok(())
    }

    /// Replaces every route override with `all` (a full read of Redis) and rebuilds when
    /// that changed anything; overrides that do not fit the config are logged and skipped.
    pub fn replace_routes(
        &self,
        all: std::collections::BTreeMap<String, Applied>,
    ) -> Result<(), Error> {
        if self.routes.replace(all) {
            self.rebuild(|running| Ok(running.config.clone()))?;
        }
        Ok(())
    }

    /// Shared state: where the cache, limits, budgets and the ledger keep what outlives a
    /// request.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The Responses API's store of responses.
    pub fn responses(&self) -> &crate::api::responses::store::ResponseStore {
        &self.responses
    }

    /// The response cache.
    pub fn cache(&self) -> &ResponseCache {
        &self.cache
    }

    /// Opens the usage ledger — Redis when `state.redis_url` is set, else SQLite under
    /// `state.dir` (created when missing) — and starts its writer on the gateway's
    /// background; from then on every request is recorded. `serve` calls it; a tool that
    /// builds a gateway to inspect it does not, and writes nothing. Needs a runtime; a
    /// second call keeps the first ledger.
    pub fn open_ledger(&self) -> Result<&Ledger, String> {
        if let Some(l) = self.ledger.get() {
            return Ok(l);
        }
        let store = match self.state.redis() {
            Some(_) => ledger::Store::Redis(self.state.clone()),
            None => {
                let dir = self.live().config.state_dir();
                ledger::Store::Sqlite(Arc::new(ledger::sqlite::SqliteLedger::open(&dir)?))
            }
        };
        Ok(self
            .ledger
            .get_or_init(|| Ledger::start(store, &self.background)))
    }

    /// The usage ledger, when open.
    pub fn ledger(&self) -> Option<&Ledger> {
        self.ledger.get()
    }

    /// The OTLP trace exporter, when `[telemetry] otlp_endpoint` is set.
    pub fn tracer(&self) -> Option<&Arc<crate::telemetry::otlp::Tracer>> {
        self.tracer.as_ref()
    }

    /// The gateway's background loops, stopped at shutdown.
    pub fn background(&self) -> &Background {
        &self.background
    }

    /// The live price table (swapped by the refresh task; read at decision time, so a
    /// swap needs no rebuild).
    pub fn pricing(&self) -> &Arc<Pricing> {
        &self.pricing
    }

    /// How long ago the gateway was built.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The alerter (its recent alerts are on the status page).
    pub fn alerter(&self) -> &Alerter {
        &self.alerter
    }

    /// The last reloads, newest first.
    pub fn reloads(&self) -> &Recent<ReloadRecord> {
        &self.reloads
    }

    /// The last requests that ended in an error, newest first (see `Gateway::note_error`).
    pub fn recent_errors(&self) -> &Recent<RecentError> {
        &self.errors
    }

    /// Every deployment's health, for the admin endpoint.
    pub fn health(&self) -> &health::Registry {
        &self.health
    }

    /// The pooled client for the gateway's own calls (price refresh, webhooks).
    pub fn client(&self) -> &reqwest::Client {
        self.clients.default_client()
    }

    /// The model names the caller may use (all of them for anonymous callers). A signed
    /// request for them is checked over `body` (`None`: an empty body).
    pub async fn visible_models(
        &self,
        caller: CallerHeaders,
        body: Option<BodyDigest>,
    ) -> Result<Vec<String>, Error> {
        let live = self.live();
        let client_addr = caller.client_addr;
        let caller = match live.keys.authenticate(caller).await? {
            Authenticated::Caller(c) => c,
            Authenticated::Signed(pending) => {
                let body = body.unwrap_or_else(|| BodyDigest::of(b""));
                live.keys.verify_signed(*pending, &body).await?
            }
        };
        crate::network::check_key(&caller, client_addr)?;
        caller.authorize()?;
        // The key's model and provider lists, as the hard filters apply them: a model is
        // listed when at least one of its deployments passes both.
        let allowed = |m: &crate::routing::ModelRoute| match &caller.key {
            None => true,
            Some(k) => m
                .deployments
                .iter()
                .any(|d| filter::model_allowed(k, &m.name, d) && filter::provider_allowed(k, d)),
        };
        Ok(live
            .catalog
            .models()
            .iter()
            .filter(|m| allowed(m))
            .map(|m| m.name.to_string())
            .collect())
    }

    /// Counts a request in, or refuses it when `server.max_in_flight` are being served:
    /// the surfaces ask first, before reading the body, so a flood is refused cheaply.
    pub fn admit(&self, live: &Live) -> Result<Admitted, Error> {
        let limit = live.config.server.max_in_flight;
        match self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            }) {
            Ok(_) => Ok(Admitted(self.in_flight.clone())),
            Err(_) => {
                metrics::counter!("switchyard_shed_total").increment(1);
                Err(Error::Overloaded {
                    message: format!(
                        "the gateway is serving its limit of {limit} requests at once; retry \
                         shortly"
                    ),
                    retry_after: failover::OVERLOADED_RETRY_AFTER,
                })
            }
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Feeds the model's answered latency to its `alert_p95_ms` watch; raises the alert
    /// when the p95 crosses the threshold.
    fn watch<T>(
        &self,
        model: &str,
        route: &Route,
        result: &Result<Served<T>, Failed>,
        started: tokio::time::Instant,
    ) {
        let (Some((threshold, latency)), Ok(_)) = (&route.watch, result) else {
            return;
        };
        let Some(p95) = latency.observe(started.elapsed(), *threshold) else {
            return;
        };
        self.alerter.raise(Alert::new(
            "latency_p95",
            model,
            format!(
                "the p95 latency of model `{model}` is {} ms, above its threshold of {} ms",
                p95.as_millis(),
                threshold.as_millis()
            ),
        ));
    }

    /// After the attempts: the model's latency watch and the exhausted-chain alert.
    /// `model` is the name the caller asked for.
    pub(crate) fn after_attempts<T>(
        &self,
        model: &str,
        route: &Route,
        result: &Result<Served<T>, Failed>,
        started: tokio::time::Instant,
    ) {
        self.watch(model, route, result, started);
        self.alert_if_exhausted(model, result);
    }

    /// Every deployment tried failed for reasons of its own: the model's chain is
    /// exhausted (the caller's own 4xx is not).
    fn alert_if_exhausted<T>(&self, model: &str, result: &Result<Served<T>, Failed>) {
        let Err(failed) = result else { return };
        let exhausted = !failed.attempts.list().is_empty()
            && match &failed.error {
                Error::DeadlineExceeded { .. } => true,
                Error::Upstream { error, .. } => error.is_retryable(),
                _ => false,
            };
        if exhausted {
            self.alerter.raise(Alert::new(
                "chain_exhausted",
                model,
                format!(
                    "every deployment of model `{model}` failed: {}",
                    failed.attempts.header_value()
                ),
            ));
        }
    }
}

impl Live {
    /// The snapshot of `config` with the route overrides that fit it applied to the
    /// catalog; `config` itself stays the file's, so clearing an override restores it.
    fn build(
        config: Config,
        clients: &providers::Clients,
        health: &health::Registry,
        pricing: &Arc<Pricing>,
        limiter: &Arc<limits::Limiter>,
        auth: &Arc<AuthState>,
        overrides: &std::collections::BTreeMap<String, Applied>,
    ) -> Result<Live, Error> {
        let (effective, mut applied) = routes::effective(&config, overrides);
        let mut catalog = match Catalog::build(&effective, clients, health, pricing) {
            Ok(catalog) => catalog,
            // An override must never take the gateway down: serve the file's order.
            Err(e) if !applied.is_empty() => {
                let detail = match &e {
                    Error::Internal { detail } => detail.clone(),
                    other => other.to_string(),
                };
                tracing::error!(
                    error = %detail,
                    "the catalog with route overrides did not build; the configured order serves"
                );
                applied.clear();
                Catalog::build(&config, clients, health, pricing)?
            }
            Err(e) => return Err(e),
        };
        for (model, source) in applied {
            catalog.mark_overridden(&model, source);
        }
        let keys = Keys::build(&config, clients.default_client(), auth.clone())
            .map_err(|detail| Error::Internal { detail })?;
        let guards = crate::guard::Guards::load(&config)?;
        Ok(Live {
            guards,
            rules: limits::Rules::new(&config),
            limiter: limiter.clone(),
            config,
            catalog,
            keys,
        })
    }
}
