//! The gateway core both surfaces call: validate, route, attempt, and hand back the answer.
//!
//! Config-derived state (the catalog and its providers) lives in one [`Live`] snapshot
//! behind an `ArcSwap`: a request takes the snapshot once and finishes on it. Every change
//! to it goes through [`Gateway::rebuild`], one at a time; prices are not part of it.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt, stream};

use crate::{
    alerts::{Alert, Alerter},
    auth::{CallerHeaders, Keys},
    background::Background,
    chat::{ChatChunk, ChatRequest, ChatResponse},
    config::Config,
    error::Error,
    failover::{self, Failed, Served},
    health,
    providers::{self, ChunkStream, ProviderError},
    routing::{Catalog, Needs, Route, filter},
    telemetry::{Outcome, RequestRecord},
    usage::pricing::{PriceTable, Pricing},
};

/// Everything built from one config.
pub struct Live {
    pub config: Config,
    pub catalog: Catalog,
    pub keys: Keys,
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
}

/// One request counted in the gateway's in-flight figure until dropped.
pub struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream committed to one deployment: the chunks read up to and including the first
/// content chunk, then the rest as it arrives.
pub struct OpenStream {
    head: Vec<ChatChunk>,
    rest: ChunkStream,
    idle_timeout: Duration,
    /// The deployment's hold, told how the stream ends; and the gateway's.
    lease: Option<health::Lease>,
    admitted: Option<Admitted>,
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
        let live = Live::build(config, &clients, &health, &pricing)?;
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
        let config = next(&self.live.load())?;
        let live = Arc::new(Live::build(
            config,
            &self.clients,
            &self.health,
            &self.pricing,
        )?);
        self.health.set_config(live.config.breaker);
        self.alerter.set_config(live.config.alerts.clone());
        self.live.store(live.clone());
        Ok(live)
    }

    /// Rebuilds the snapshot from `config` ([`Gateway::rebuild`]).
    pub fn reload(&self, config: Config) -> Result<(), Error> {
        self.rebuild(|_| Ok(config)).map(drop)
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

    /// Every deployment's health, for the admin endpoint.
    pub fn health(&self) -> &health::Registry {
        &self.health
    }

    /// The pooled client for the gateway's own calls (price refresh, webhooks).
    pub fn client(&self) -> &reqwest::Client {
        self.clients.default_client()
    }

    /// The model names the caller may use (all of them for anonymous callers).
    pub fn visible_models(&self, caller: CallerHeaders) -> Result<Vec<String>, Error> {
        let live = self.live();
        let caller = live.keys.caller(caller)?;
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

    /// One completion, failing over across the model's deployments. `admitted` is the
    /// request's place in `server.max_in_flight` ([`Gateway::admit`]), taken before its body
    /// was read.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        caller: CallerHeaders,
        admitted: Admitted,
    ) -> Result<Served<ChatResponse>, Failed> {
        let _admitted = admitted;
        let live = self.live();
        let route = route(&live, request, caller)?;
        let started = tokio::time::Instant::now();
        let result = failover::run(
            &route.plan,
            &settings(&live, &route, false),
            |d| async move { d.provider.chat(request, &d.model).await },
        )
        .await;
        self.watch(request, &route, &result, started);
        self.alert_if_exhausted(request, &result);
        with_explain(result, route)
    }

    /// Counts a request in, or refuses it when `server.max_in_flight` are being served:
    /// the surfaces ask first, before reading the body, so a flood is refused cheaply.
    pub fn admit(&self) -> Result<Admitted, Error> {
        let limit = self.live.load().config.server.max_in_flight;
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
        request: &ChatRequest,
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
        let model = &request.model;
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

    /// A streamed completion. Fails over until a deployment's stream produces its first
    /// content chunk (or ends cleanly); from then on the stream is committed.
    pub async fn chat_stream(
        &self,
        request: &ChatRequest,
        caller: CallerHeaders,
        admitted: Admitted,
    ) -> Result<Served<OpenStream>, Failed> {
        let live = self.live();
        let route = route(&live, request, caller)?;
        let default_idle = live.config.failover.attempt_timeout;
        let started = tokio::time::Instant::now();
        let result = failover::run(
            &route.plan,
            &settings(&live, &route, true),
            |d| async move {
                let open = async {
                    let mut rest = d.provider.chat_stream(request, &d.model).await?;
                    let mut head = Vec::new();
                    while let Some(item) = rest.next().await {
                        let chunk = item?;
                        let committed = chunk.has_content();
                        head.push(chunk);
                        if committed {
                            break;
                        }
                    }
                    Ok(OpenStream {
                        head,
                        rest,
                        idle_timeout: d.timeouts.idle.unwrap_or(default_idle),
                        lease: None,
                        admitted: None,
                    })
                };
                // A stream stalled before its first content chunk fails over.
                match d.timeouts.ttft {
                    Some(ttft) => tokio::time::timeout(ttft, open)
                        .await
                        .unwrap_or(Err(ProviderError::Timeout)),
                    None => open.await,
                }
            },
        )
        .await;
        self.watch(request, &route, &result, started);
        self.alert_if_exhausted(request, &result);
        let result = result.map(|mut served| {
            // The stream's end is the deployment's outcome, told through its lease.
            served.value.lease = served.lease.take();
            served.value.admitted = Some(admitted);
            served
        });
        with_explain(result, route)
    }

    /// Every deployment tried failed for reasons of its own: the model's chain is
    /// exhausted (the caller's own 4xx is not).
    fn alert_if_exhausted<T>(&self, request: &ChatRequest, result: &Result<Served<T>, Failed>) {
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
                &request.model,
                format!(
                    "every deployment of model `{}` failed: {}",
                    request.model,
                    failed.attempts.header_value()
                ),
            ));
        }
    }
}

impl Live {
    fn build(
        config: Config,
        clients: &providers::Clients,
        health: &health::Registry,
        pricing: &Arc<Pricing>,
    ) -> Result<Live, Error> {
        let catalog = Catalog::build(&config, clients, health, pricing)?;
        let keys = Keys::new(&config.keys);
        Ok(Live {
            config,
            catalog,
            keys,
        })
    }
}

/// How the attempts of a request on this route run.
fn settings(live: &Live, route: &Route, stream: bool) -> failover::Settings {
    failover::Settings {
        failover: live.config.failover,
        stream,
        hedge: route.hedge,
    }
}

/// Authenticates, validates and routes: the plan, or why there is none.
fn route(live: &Live, request: &ChatRequest, caller: CallerHeaders) -> Result<Route, Failed> {
    live.keys
        .caller(caller)
        .and_then(|caller| {
            validate(request)?;
            live.catalog.route(request, &Needs::of(request), &caller)
        })
        .map_err(Failed::refused)
}

fn with_explain<T>(result: Result<Served<T>, Failed>, route: Route) -> Result<Served<T>, Failed> {
    // Deployments routing left out for an open circuit show as skipped, like those the
    // attempt loop passed over.
    match result {
        Ok(mut served) => {
            served.attempts.skipped_first(&route.skipped);
            served.explain = route.explain;
            Ok(served)
        }
        Err(mut failed) => {
            failed.attempts.skipped_first(&route.skipped);
            failed.explain = Box::new(route.explain);
            Err(failed)
        }
    }
}

/// Checks the request is one any provider could serve.
fn validate(request: &ChatRequest) -> Result<(), Error> {
    if request.model.trim().is_empty() {
        return Err(Error::bad_param("model", "`model` must not be empty"));
    }
    if request.messages.is_empty() {
        return Err(Error::bad_param(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    Ok(())
}

impl OpenStream {
    /// The committed stream: buffered head first, then the rest, each later chunk due
    /// within the idle timeout.
    fn into_stream(self) -> impl Stream<Item = Result<ChatChunk, ProviderError>> + Send {
        let idle = self.idle_timeout;
        // Ends after the first error: a broken stream has nothing more to give.
        let rest = stream::unfold(Some(self.rest), move |rest| async move {
            let mut rest = rest?;
            match tokio::time::timeout(idle, rest.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(rest))),
                Ok(Some(Err(e))) => Some((Err(e), None)),
                Ok(None) => None,
                Err(_) => Some((Err(ProviderError::Timeout), None)),
            }
        });
        stream::iter(self.head.into_iter().map(Ok)).chain(rest)
    }
}

/// One step of a committed stream as a surface delivers it.
pub enum Delivered {
    /// A chunk to send.
    Chunk(ChatChunk),
    /// The stream broke after commit; send this error and end.
    Broken(Error),
    /// The provider finished; send the terminator (REST `[DONE]`) and end.
    Done,
}

/// Writes the request record when the stream ends however it ends: a stream the client
/// abandoned is dropped before its end, which records a cancellation.
struct RecordGuard {
    record: Option<RequestRecord>,
    outcome: Outcome,
    /// Told how the stream ended; dropped with the guard (an abandoned stream tells the
    /// deployment nothing).
    lease: Option<health::Lease>,
    _admitted: Option<Admitted>,
}

impl RecordGuard {
    /// Tells the deployment how its stream ended.
    fn tell(&mut self, outcome: health::Outcome) {
        if let Some(lease) = &mut self.lease {
            lease.record(outcome, tokio::time::Instant::now());
        }
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.finish(self.outcome);
        }
    }
}

impl OpenStream {
    /// The committed stream as the caller should see it, with accounting: usage is recorded
    /// from the provider's final chunk, and withheld from the caller unless it asked for it
    /// (`include_usage`), since the gateway asks upstream for usage for its own sake.
    pub fn deliver(
        mut self,
        record: RequestRecord,
        include_usage: bool,
    ) -> impl Stream<Item = Delivered> + Send {
        let guard = RecordGuard {
            record: Some(record),
            outcome: Outcome::Cancelled,
            lease: self.lease.take(),
            _admitted: self.admitted.take(),
        };
        let chunks = Box::pin(self.into_stream());
        stream::unfold(Some((chunks, guard)), move |state| async move {
            let (mut chunks, mut guard) = state?;
            loop {
                match chunks.next().await {
                    Some(Ok(mut chunk)) => {
                        let record = guard.record.as_mut()?;
                        if let Some(u) = &chunk.usage {
                            record.usage = Some(u.clone());
                        }
                        if !include_usage {
                            if chunk.choices.is_empty() && chunk.usage.is_some() {
                                continue;
                            }
                            chunk.usage = None;
                        }
                        record.first_byte();
                        return Some((Delivered::Chunk(chunk), Some((chunks, guard))));
                    }
                    Some(Err(error)) => {
                        let record = guard.record.as_ref()?;
                        let provider = record.provider.clone().unwrap_or_else(|| "upstream".into());
                        let error = Error::upstream(provider, error);
                        tracing::warn!(request_id = %record.request_id, %error, "stream broke after commit");
                        guard.outcome = Outcome::StreamBroken;
                        if let Error::Upstream { error, .. } = &error
                            && let Some(o) = failover::health_outcome(error, Duration::ZERO)
                        {
                            guard.tell(o);
                        }
                        return Some((Delivered::Broken(error), None));
                    }
                    None => {
                        guard.outcome = Outcome::Ok;
                        guard.tell(health::Outcome::Completed);
                        return Some((Delivered::Done, None));
                    }
                }
            }
        })
    }
}
