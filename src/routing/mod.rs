//! Routing: the catalog of models, the hard filters, and the policy that orders what is left.
//!
//! [`Catalog::route`] is the whole decision for one request:
//! 1. the hard filters ([`filter`]), in Rust, which a policy cannot undo: the key's allowed
//!    models and providers, the security level's required tags, capabilities and context
//!    window, and open circuits (unless nothing else is left);
//! 2. the model's policy ([`policy`]), a sandboxed Lua function that orders the survivors,
//!    falling back to the configured order when it fails;
//! 3. a [`Route`]: the plan for the attempt loop and the [`Explain`] for the log.

pub mod capabilities;
mod explain;
pub mod filter;
pub mod policy;

use std::{collections::HashMap, ops::Deref, sync::Arc, time::Duration};

pub use capabilities::{Capabilities, Needs, Unmet};
pub use explain::explain_text;
pub use filter::Removed;
pub use policy::{PolicyError, Script};

use crate::{
    auth::Caller,
    chat::ChatRequest,
    config::{Config, DeploymentTimeouts, Hedge, SecurityTiers},
    error::Error,
    health::{self, DeploymentHealth},
    providers::{self, Provider},
    usage::pricing::{Price, PriceOverride, PriceTable, Pricing},
};

/// One provider serving one model: a candidate for an attempt. Cheap to clone.
#[derive(Clone)]
pub struct Deployment(Arc<DeploymentInfo>);

/// What the gateway knows about a deployment.
#[derive(Clone)]
pub struct DeploymentInfo {
    /// `provider/model`: how policies, headers and logs name it.
    pub id: Arc<str>,
    /// The provider's config name (shown in headers, logs and metrics).
    pub provider_name: Arc<str>,
    /// The provider's preset (`openai`, `anthropic`, ...).
    pub kind: &'static str,
    /// The model name sent upstream.
    pub model: Arc<str>,
    /// The upstream host (its base URL's), the trace's `server.address`.
    pub server: Arc<str>,
    pub provider: Arc<dyn Provider>,
    pub capabilities: Capabilities,
    /// The prices the config sets; the rest come from `pricing` when asked
    /// ([`Deployment::price`]), so a new price table needs no rebuild.
    pub price_set: PriceOverride,
    /// The live price table (the gateway's, swapped by the refresh task).
    pub pricing: Arc<Pricing>,
    pub quality: u32,
    pub tags: Vec<String>,
    pub region: Option<String>,
    pub weight: f64,
    /// 1-based place in the model's configured order.
    pub position: usize,
    pub timeouts: DeploymentTimeouts,
    /// Attempts in flight at once; `None`: no limit.
    pub max_concurrent: Option<u32>,
    /// Live stats and the circuit breaker; the same across config reloads.
    pub health: Arc<DeploymentHealth>,
}

impl Deployment {
    pub fn new(info: DeploymentInfo) -> Deployment {
        Deployment(Arc::new(info))
    }

    /// A deployment with default metadata and health of its own: for tests and benches.
    pub fn bare(provider_name: &str, model: &str, provider: Arc<dyn Provider>) -> Deployment {
        let id = format!("{provider_name}/{model}");
        let health = health::Registry::new(health::BreakerConfig::default()).deployment(&id);
        Deployment::new(DeploymentInfo {
            id: Arc::from(id),
            provider_name: Arc::from(provider_name),
            kind: "openai",
            model: Arc::from(model),
            server: Arc::from(""),
            provider,
            capabilities: Capabilities::ANY,
            price_set: PriceOverride::default(),
            pricing: Arc::new(Pricing::new(PriceTable::empty())),
            quality: 1,
            tags: Vec::new(),
            region: None,
            weight: 1.0,
            position: 1,
            timeouts: DeploymentTimeouts::default(),
            max_concurrent: None,
            health,
        })
    }
}

impl DeploymentInfo {
    /// USD per million tokens now: the config's prices over the live table's, 0 for what
    /// neither sets.
    pub fn price(&self) -> Price {
        self.pricing.price(&self.model, &self.price_set)
    }

    /// The price to bill a call at, at the time of the call: `None` when the deployment
    /// is unpriced (input and output both 0), so no cost is reported.
    pub fn billed_price(&self) -> Option<Price> {
        Some(self.price()).filter(|p| p.input > 0.0 || p.output > 0.0)
    }
}

impl Deref for Deployment {
    type Target = DeploymentInfo;

    fn deref(&self) -> &DeploymentInfo {
        &self.0
    }
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

/// A model callers ask for: its deployments in configured order, and how to order them.
pub struct ModelRoute {
    pub name: Arc<str>,
    pub deployments: Arc<[Deployment]>,
    /// The policy's name (`static` runs no script).
    pub policy: Arc<str>,
    pub script: Option<Arc<Script>>,
    /// `[[models]] params`, for the script.
    pub params: Arc<toml::Table>,
    pub hedge: Option<Hedge>,
    /// The `latency_p95` alert threshold, and the latency it watches.
    pub alert_p95: Option<Duration>,
    /// `[[models]] cache_ttl_s`: `None` follows `cache.ttl_s`, zero never caches.
    pub cache_ttl: Option<Duration>,
    pub latency: Arc<health::ModelLatency>,
    /// Where the deployment order came from: `None` for the config file, else the live
    /// override's source ([`crate::routes`]).
    pub order_source: Option<Arc<str>>,
}

/// One step of a plan: a deployment and, when the policy set one, its attempt timeout.
#[derive(Debug, Clone)]
pub struct Planned {
    pub deployment: Deployment,
    pub timeout: Option<Duration>,
}

impl From<Deployment> for Planned {
    fn from(deployment: Deployment) -> Planned {
        Planned {
            deployment,
            timeout: None,
        }
    }
}

/// A routing decision: what to try, in order, and why.
#[derive(Debug)]
pub struct Route {
    pub plan: Vec<Planned>,
    pub explain: Explain,
    /// The model's hedging, for the attempt loop.
    pub hedge: Option<Hedge>,
    /// The model's `alert_p95_ms` and the latency it watches.
    pub watch: Option<(Duration, Arc<health::ModelLatency>)>,
    /// Deployments left out because their circuit is open, in configured order.
    pub skipped: Vec<Deployment>,
}

/// Why the plan is what it is, for `route --explain` and the request log.
#[derive(Debug, Clone, Default)]
pub struct Explain {
    pub policy: Arc<str>,
    /// Deployments the hard filters removed, each with the reason.
    pub removed: Vec<Removed>,
    /// Set when the policy failed and the configured order was used instead.
    pub fallback: Option<String>,
    /// Ids the policy returned that were not candidates (ignored).
    pub ignored: Vec<String>,
    /// Time spent in the policy.
    pub policy_time: Duration,
    /// Set when a live route override, not the config file, gave the model's order.
    pub order_source: Option<Arc<str>>,
}

impl Explain {
    /// One line for the request log: `removed` and `fallback`, when there were any.
    pub fn summary(&self) -> Option<String> {
        if self.removed.is_empty()
            && self.fallback.is_none()
            && self.ignored.is_empty()
            && self.order_source.is_none()
        {
            return None;
        }
        let mut parts: Vec<String> = self
            .order_source
            .iter()
            .map(|s| format!("order from the {s}"))
            .collect();
        parts.extend(
            self.removed
                .iter()
                .map(|r| format!("{} removed: {}", r.id, r.reason)),
        );
        if let Some(f) = &self.fallback {
            parts.push(format!("policy failed ({f}): configured order"));
        }
        if !self.ignored.is_empty() {
            parts.push(format!(
                "policy named non-candidates: {}",
                self.ignored.join(", ")
            ));
        }
        Some(parts.join("; "))
    }
}

/// Every model the gateway serves, with its deployments and policies.
pub struct Catalog {
    models: Vec<ModelRoute>,
    by_name: crate::FastMap<String, usize>,
    tiers: SecurityTiers,
    /// Identifies this build: per-thread policy VMs are rebuilt when it changes.
    generation: u64,
    /// The live price table: policies see its prices, rewritten when its version moves.
    pricing: Arc<Pricing>,
    limits: policy::sandbox::Limits,
}

impl Catalog {
    /// Builds providers, the model table and the policies from a validated config.
    /// Scripts are loaded and self-checked here: a broken one fails the build. Prices are
    /// not copied in: deployments read `pricing` when asked.
    pub fn build(
        config: &Config,
        clients: &providers::Clients,
        health: &health::Registry,
        pricing: &Arc<Pricing>,
    ) -> Result<Catalog, Error> {
        let scripts = policy::load_scripts(config).map_err(|e| Error::Internal {
            detail: e.to_string(),
        })?;
        // Provider name -> (shared name, preset kind, built provider).
        type Built = (Arc<str>, &'static str, Arc<dyn Provider>, Arc<str>);
        let mut built: HashMap<&str, Built> = HashMap::new();
        for p in &config.providers {
            let provider = clients
                .with_connect_timeout(p.connect_timeout.unwrap_or(config.failover.connect_timeout))
                .and_then(|client| providers::build(p, &client))
                .map_err(|detail| Error::Internal {
                    detail: format!("provider `{}`: {detail}", p.name),
                })?;
            let server: Arc<str> = reqwest::Url::parse(&p.base_url)
                .ok()
                .and_then(|u| u.host_str().map(Arc::from))
                .unwrap_or_else(|| Arc::from(""));
            built.insert(
                &p.name,
                (Arc::from(p.name.as_str()), p.kind, provider, server),
            );
        }
        let mut models = Vec::with_capacity(config.models.len());
        let mut by_name =
            crate::FastMap::with_capacity_and_hasher(config.models.len(), Default::default());
        for m in &config.models {
            let deployments: Vec<Deployment> = m
                .deployments
                .iter()
                .filter_map(|d| Some((d, built.get(d.provider.as_str())?)))
                .enumerate()
                .map(|(i, (d, (name, kind, provider, server)))| {
                    let id = d.id();
                    Deployment::new(DeploymentInfo {
                        health: health.deployment(&id),
                        id: Arc::from(id),
                        provider_name: name.clone(),
                        kind,
                        model: Arc::from(d.model.as_str()),
                        server: server.clone(),
                        provider: provider.clone(),
                        capabilities: d.capabilities,
                        price_set: PriceOverride {
                            input: d.price_in,
                            output: d.price_out,
                            cached_input: d.price_cached,
                        },
                        pricing: pricing.clone(),
                        quality: d.quality,
                        tags: d.tags.clone(),
                        region: d.region.clone(),
                        weight: d.weight,
                        position: i + 1,
                        timeouts: d.timeouts,
                        max_concurrent: d.max_concurrent,
                    })
                })
                .collect();
            let policy = config.policy_of(m);
            let script = scripts.get(policy).cloned();
            if script.is_some() && deployments.len() > policy::sandbox::MAX_CANDIDATES {
                return Err(Error::Internal {
                    detail: format!(
                        "model `{}`: a Lua policy routes at most {} deployments; this model has \
                         {} (use policy = \"static\" or split the model)",
                        m.name,
                        policy::sandbox::MAX_CANDIDATES,
                        deployments.len()
                    ),
                });
            }
            by_name.insert(m.name.clone(), models.len());
            models.push(ModelRoute {
                name: Arc::from(m.name.as_str()),
                deployments: Arc::from(deployments),
                policy: Arc::from(policy),
                script,
                params: Arc::new(m.params.clone().into_iter().collect()),
                hedge: m.hedge,
                alert_p95: m.alert_p95,
                cache_ttl: m.cache_ttl,
                latency: health.model_latency(&m.name),
                order_source: None,
            });
        }
        Ok(Catalog {
            models,
            by_name,
            tiers: config.security_tiers.clone(),
            generation: policy::next_generation(),
            pricing: pricing.clone(),
            limits: policy::sandbox::Limits {
                instructions: config.routing.instruction_budget,
                memory: config.routing.memory_limit,
            },
        })
    }

    /// Records that `model`'s order came from a live override (`source` says which).
    pub fn mark_overridden(&mut self, model: &str, source: Arc<str>) {
        if let Some(&i) = self.by_name.get(model) {
            self.models[i].order_source = Some(source);
        }
    }

    /// The model callers name `model`.
    pub fn model(&self, model: &str) -> Result<&ModelRoute, Error> {
        self.by_name
            .get(model)
            .map(|&i| &self.models[i])
            .ok_or_else(|| Error::ModelNotFound {
                model: model.to_owned(),
            })
    }

    /// Every model, in config order.
    pub fn models(&self) -> &[ModelRoute] {
        &self.models
    }

    /// The catalog's own name for `model`, for metric labels; `None` when it has no such
    /// model (a caller's string never becomes a label).
    pub fn label(&self, model: &str) -> Option<Arc<str>> {
        let index = *self.by_name.get(model)?;
        Some(self.models[index].name.clone())
    }

    /// The deployments to try for `request`, filtered and ordered, with the reasons.
    pub fn route(
        &self,
        request: &ChatRequest,
        needs: &Needs,
        caller: &Caller,
    ) -> Result<Route, Error> {
        self.route_model(&request.model, Some(request), needs, caller)
    }

    /// As [`Catalog::route`] for a call that is not a chat completion (embeddings): what
    /// it needs is all there is to know, and it is not a stream.
    pub fn route_other(&self, model: &str, needs: &Needs, caller: &Caller) -> Result<Route, Error> {
        self.route_model(model, None, needs, caller)
    }

    fn route_model(
        &self,
        model_name: &str,
        request: Option<&ChatRequest>,
        needs: &Needs,
        caller: &Caller,
    ) -> Result<Route, Error> {
        let index = *self
            .by_name
            .get(model_name)
            .ok_or_else(|| Error::ModelNotFound {
                model: model_name.to_owned(),
            })?;
        let model = &self.models[index];
        let filtered = filter::run(model, request, needs, caller, &self.tiers)?;
        let facts = policy::Facts {
            input_tokens: needs.tokens.saturating_sub(needs.output_tokens),
            max_tokens: (needs.output_tokens > 0).then_some(needs.output_tokens),
            stream: request.is_some_and(ChatRequest::is_stream),
            needs,
            caller,
        };
        let mut decision = policy::order(self, index, &filtered.survivors, &facts);
        let plan = plan(model, &filtered.survivors, &mut decision);
        Ok(Route {
            plan,
            hedge: model.hedge,
            watch: model.alert_p95.map(|t| (t, model.latency.clone())),
            skipped: filtered.circuit_open,
            explain: Explain {
                policy: model.policy.clone(),
                removed: filtered.removed,
                fallback: decision.fallback,
                ignored: decision.ignored,
                policy_time: decision.took,
                order_source: model.order_source.clone(),
            },
        })
    }
}

/// The plan from a policy's order, keeping only `survivors` (the deployments that passed
/// the hard filters for this request), each once: a policy can reorder and drop, never add.
/// Whatever the policy engine returns, what it named beyond that goes to `ignored`.
/// If nothing the policy named survives, the survivors in configured order are the plan.
fn plan(model: &ModelRoute, survivors: &[usize], decision: &mut policy::Decision) -> Vec<Planned> {
    let n = model.deployments.len();
    let mut allowed = IndexSet::new(n);
    for &i in survivors {
        allowed.insert(i);
    }
    let mut planned = IndexSet::new(n);
    let mut plan: Vec<Planned> = Vec::with_capacity(decision.order.len());
    for &(i, timeout) in &decision.order {
        let Some(deployment) = model.deployments.get(i) else {
            continue;
        };
        if !allowed.contains(i) {
            decision.ignored.push(deployment.id.to_string());
        } else if planned.insert(i) {
            plan.push(Planned {
                deployment: deployment.clone(),
                timeout,
            });
        }
    }
    if plan.is_empty() && !survivors.is_empty() {
        decision.fallback = Some("the policy named no deployment that passed the filters".into());
        plan = survivors
            .iter()
            .map(|&i| model.deployments[i].clone().into())
            .collect();
    }
    plan
}

/// A set of deployment indices: one word for the usual model, a vector past 64.
enum IndexSet {
    Small(u64),
    Large(Vec<bool>),
}

impl IndexSet {
    fn new(n: usize) -> IndexSet {
        if n <= 64 {
            IndexSet::Small(0)
        } else {
            IndexSet::Large(vec![false; n])
        }
    }

    /// Adds `i`; whether it was new.
    fn insert(&mut self, i: usize) -> bool {
        match self {
            IndexSet::Small(bits) => {
                let bit = 1u64 << i;
                let new = *bits & bit == 0;
                *bits |= bit;
                new
            }
            IndexSet::Large(v) => !std::mem::replace(&mut v[i], true),
        }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            IndexSet::Small(bits) => bits & (1u64 << i) != 0,
            IndexSet::Large(v) => v[i],
        }
    }
}

#[cfg(test)]
mod tests;
