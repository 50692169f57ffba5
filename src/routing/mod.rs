//! Routing: the catalog of models and the deployments that may serve a request.
//!
//! This first cut plans in the configured order; hard filters and the Lua policy engine
//! slot in between [`Catalog::plan`] and the attempt loop.

pub mod capabilities;

use std::{collections::HashMap, sync::Arc};

pub use capabilities::{Capabilities, Needs, Unmet};

use crate::{
    chat::ChatRequest,
    config::Config,
    error::Error,
    providers::{self, Provider},
};

/// One provider serving one model: a candidate for an attempt.
#[derive(Clone)]
pub struct Deployment {
    /// The provider's config name (shown in headers, logs and metrics).
    pub provider_name: Arc<str>,
    /// The model name sent upstream.
    pub model: Arc<str>,
    pub provider: Arc<dyn Provider>,
    pub capabilities: Capabilities,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider_name, self.model)
    }
}

/// Every model the gateway serves, with its deployments in configured order.
pub struct Catalog {
    models: HashMap<String, Arc<[Deployment]>>,
    /// Model names in config order, for listings.
    names: Vec<String>,
}

impl Catalog {
    /// Builds providers and the model table from a validated config.
    pub fn build(config: &Config, client: &reqwest::Client) -> Result<Catalog, Error> {
        let mut built: HashMap<&str, (Arc<str>, Arc<dyn Provider>)> = HashMap::new();
        for p in &config.providers {
            let provider = providers::build(p, client).map_err(|detail| Error::Internal {
                detail: format!("provider `{}`: {detail}", p.name),
            })?;
            built.insert(&p.name, (Arc::from(p.name.as_str()), provider));
        }
        let mut models = HashMap::with_capacity(config.models.len());
        let mut names = Vec::with_capacity(config.models.len());
        for m in &config.models {
            let deployments: Vec<Deployment> = m
                .deployments
                .iter()
                .filter_map(|d| {
                    let (name, provider) = built.get(d.provider.as_str())?;
                    Some(Deployment {
                        provider_name: name.clone(),
                        model: Arc::from(d.model.as_str()),
                        provider: provider.clone(),
                        capabilities: d.capabilities,
                    })
                })
                .collect();
            models.insert(m.name.clone(), Arc::from(deployments));
            names.push(m.name.clone());
        }
        Ok(Catalog { models, names })
    }

    /// The deployments to try for `model`, in order.
    pub fn plan(&self, model: &str) -> Result<Arc<[Deployment]>, Error> {
        self.models
            .get(model)
            .cloned()
            .ok_or_else(|| Error::ModelNotFound {
                model: model.to_owned(),
            })
    }

    /// The deployments of `model` that can take a request needing `needs`, in order; a
    /// 400 naming what is missing when none can.
    pub fn plan_for(
        &self,
        request: &ChatRequest,
        needs: &Needs,
    ) -> Result<Arc<[Deployment]>, Error> {
        let model = request.model.as_str();
        let all = self.plan(model)?;
        let unmet = |d: &Deployment| needs.unmet_for(&d.capabilities, &d.model, request);
        if all.iter().all(|d| unmet(d).is_none()) {
            return Ok(all);
        }
        let kept: Vec<Deployment> = all.iter().filter(|d| unmet(d).is_none()).cloned().collect();
        if !kept.is_empty() {
            return Ok(Arc::from(kept));
        }
        let unmet: Vec<Unmet> = all.iter().filter_map(unmet).collect();
        Err(
            match unmet.iter().find_map(|u| match u {
                Unmet::Capability(name) => Some(*name),
                Unmet::Context { .. } => None,
            }) {
                Some(capability) => Error::Unsupported {
                    model: model.to_owned(),
                    capability,
                },
                None => Error::ContextLength {
                    tokens: needs.tokens,
                    window: unmet
                        .iter()
                        .filter_map(|u| match u {
                            Unmet::Context { window } => Some(*window),
                            Unmet::Capability(_) => None,
                        })
                        .max()
                        .unwrap_or(0),
                },
            },
        )
    }

    /// Model names in config order.
    pub fn model_names(&self) -> &[String] {
        &self.names
    }
}
