//! Hot reload: the config file and the scripts folder are watched, SIGHUP and
//! `POST /admin/reload` ask too, and every trigger goes through [`reload`], which changes
//! the live state only through [`Gateway::rebuild`] (one rebuild at a time).
//!
//! A reload reads the file, validates it, builds a new catalog (loading and self-checking
//! every policy it names) and swaps it in atomically; anything that fails leaves the old
//! snapshot serving, with a log line and `switchyard_config_reloads_total{result="rejected"}`.
//! Requests in flight finish on the snapshot they started with. The listen addresses
//! cannot change while serving: a new file's are kept as they were, with a warning.
//!
//! The watcher watches folders, not files (editors save by writing a new file and renaming
//! it over the old), and waits [`SETTLE`] after the first event so that one save is one
//! reload. A Kubernetes ConfigMap volume changes no visible file at all: the kubelet writes
//! the new data into a new hidden folder and renames a symlink over [`KUBERNETES_DATA`],
//! which every visible file points through; that rename counts as a change too.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{config::Config, gateway::Gateway, telemetry::recent};

/// Quiet time after a file event before reloading, so a save's several events make one
/// reload.
pub const SETTLE: Duration = Duration::from_millis(75);

/// The symlink through which a Kubernetes ConfigMap (or Secret, or projected) volume's
/// files point at the current version of its data; an update renames a new one over it.
pub const KUBERNETES_DATA: &str = "..data";

/// One reload as the status page lists it ([`Gateway::reloads`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadRecord {
    /// Unix seconds.
    pub at: u64,
    /// Who asked: `watch`, `sighup` or `admin`.
    pub trigger: &'static str,
    /// `ok` or `rejected`.
    pub result: &'static str,
    /// The models the new config serves (`None` when rejected).
    pub models: Option<usize>,
    pub took_ms: u64,
    /// Why it was rejected (cut to [`recent::MESSAGE_CHARS`]).
    pub error: Option<String>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub models: usize,
    pub policies: Vec<String>,
    pub took_ms: u64,
}

/// Reloads `gateway` from its config file ([`Gateway::set_config_file`]): reads,
/// validates, builds and swaps in, through [`Gateway::rebuild`]. `trigger` names who asked
/// (`watch`, `sighup`, `admin`) for the log and metric. On error the old config serves.
pub fn reload(gateway: &Gateway, trigger: &'static str) -> Result<Reloaded, String> {
    let Some(path) = gateway.config_file() else {
        return Err(
            "the gateway runs on its embedded default; there is no config file to reload"
                .to_owned(),
        );
    };
    let started = Instant::now();
    let result = try_reload(gateway, path).map(|(models, policies)| Reloaded {
        models,
        policies,
        took_ms: started.elapsed().as_millis() as u64,
    });
    let label = if result.is_ok() { "ok" } else { "rejected" };
    gateway.reloads().push(ReloadRecord {
        at: recent::unix_now(),
        trigger,
        result: label,
        models: result.as_ref().ok().map(|r| r.models),
        took_ms: started.elapsed().as_millis() as u64,
        error: result
            .as_ref()
            .err()
            .map(|e| recent::cut(e, recent::MESSAGE_CHARS)),
    });
    metrics::counter!("switchyard_config_reloads_total", "trigger" => trigger, "result" => label)
        .increment(1);
    match &result {
        Ok(r) => tracing::info!(
            trigger,
            file = %path.display(),
            models = r.models,
            took_ms = r.took_ms,
            "config reloaded"
        ),
        Err(error) => tracing::error!(
            trigger,
            file = %path.display(),
            %error,
            "config reload rejected; the previous config keeps serving"
        ),
    }
    result
}

/// The reload itself: the model count and the policies in use, or why it was refused.
fn try_reload(gateway: &Gateway, path: &Path) -> Result<(usize, Vec<String>), String> {
    // Read and parsed outside the rebuild lock: only the swap needs to be one at a time.
    let mut config = Config::load(path).map_err(|e| e.to_string())?;
    let live = gateway
        .rebuild(|running| {
            let server = &running.config.server;
            if config.server.http_addr != server.http_addr
                || config.server.grpc_addr != server.grpc_addr
            {
                tracing::warn!(
                    "listen addresses cannot change while serving; restart to apply them"
                );
                config.server.http_addr = server.http_addr;
                config.server.grpc_addr = server.grpc_addr;
            }
            // The files are watched (`network::tls`); their paths are read at start.
            if config.network.tls != running.config.network.tls {
                tracing::warn!(
                    "server.tls_cert and server.tls_key cannot change while serving; restart to apply them"
                );
                config.network.tls.clone_from(&running.config.network.tls);
            }
            Ok(config)
        })
        .map_err(|e| match e {
            crate::error::Error::Internal { detail } => detail,
            other => other.to_string(),
        })?;
    let mut policies: Vec<String> = live
        .catalog
        .models()
        .iter()
        .map(|m| m.policy.to_string())
        .collect();
    policies.sort();
    policies.dedup();
    Ok((live.catalog.models().len(), policies))
}

/// The folders a reload depends on: the config file's and the scripts folder.
fn watched_dirs(gateway: &Gateway, config: &Path) -> Vec<PathBuf> {
    let config_dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut dirs = vec![config_dir];
    if let Some(scripts) = gateway.live().config.scripts_dir()
        && scripts.is_dir()
        && !dirs.contains(&scripts)
    {
        dirs.push(scripts);
    }
    dirs
}

/// Whether a changed path matters: the config file itself, a policy or its cases, or a
/// Kubernetes volume's data swapped under them.
fn relevant(config: &Path, path: &Path) -> bool {
    let name = path.file_name();
    let is_config = name.is_some_and(|n| Some(n) == config.file_name());
    let is_script = path.extension().is_some_and(|e| e == "lua" || e == "json");
    let is_swap = name.is_some_and(|n| n == KUBERNETES_DATA);
    is_config || is_script || is_swap
}

/// Starts watching the config and scripts folders now (so no save made after this returns
/// is missed) and returns the task that reloads after each settled change until
/// `shutdown` is cancelled. Fails if the gateway has no config file or the watcher cannot
/// start.
pub fn watch(
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, String> {
    let config = gateway
        .config_file()
        .ok_or("no config file to watch")?
        .to_path_buf();
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let filter = config.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let changes = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        );
        if changes && event.paths.iter().any(|p| relevant(&filter, p)) {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("starting the file watcher: {e}"))?;
    let mut dirs = watched_dirs(&gateway, &config);
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("watching {}: {e}", dir.display()))?;
    }
    Ok(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Let the save finish: drain events until SETTLE passes quietly.
            while let Ok(Some(())) = tokio::time::timeout(SETTLE, rx.recv()).await {}
            if shutdown.is_cancelled() {
                return;
            }
            let gw = gateway.clone();
            let _ = tokio::task::spawn_blocking(move || reload(&gw, "watch")).await;
            // The scripts folder may have moved with the config.
            let now = watched_dirs(&gateway, &config);
            for dir in now.iter().filter(|d| !dirs.contains(d)) {
                if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the scripts folder");
                }
            }
            dirs = now;
        }
    })
}

/// Installs the SIGHUP handler now (a SIGHUP after this returns reloads rather than
/// killing the process) and returns the task that reloads on each one until `shutdown`
/// is cancelled.
#[cfg(unix)]
pub fn on_sighup(
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup =
        signal(SignalKind::hangup()).map_err(|e| format!("cannot listen for SIGHUP: {e}"))?;
    Ok(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            let gw = gateway.clone();
            let _ = tokio::task::spawn_blocking(move || reload(&gw, "sighup")).await;
        }
    })
}
