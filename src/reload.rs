//! Hot reload: the config file and the scripts folder are watched, SIGHUP and
//! `POST /admin/reload` ask too, and every trigger goes through [`Reloader::reload`].
//!
//! A reload reads the file, validates it, builds a new catalog (loading and self-checking
//! every policy it names) and swaps it in atomically; anything that fails leaves the old
//! snapshot serving, with a log line and `switchyard_config_reloads_total{result="rejected"}`.
//! Requests in flight finish on the snapshot they started with. The listen addresses
//! cannot change while serving: a new file's are kept as they were, with a warning.
//!
//! The watcher watches folders, not files (editors save by writing a new file and renaming
//! it over the old), and waits [`SETTLE`] after the first event so that one save is one
//! reload.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::{sync::mpsc, time::Instant};

use crate::{config::Config, gateway::Gateway};

/// Quiet time after a file event before reloading, so a save's several events make one
/// reload.
pub const SETTLE: Duration = Duration::from_millis(75);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub models: usize,
    pub policies: Vec<String>,
    pub took_ms: u64,
}

/// Reloads a gateway from its config file, one reload at a time (kept by the gateway,
/// see [`Gateway::set_config_file`]).
pub struct Reloader {
    path: PathBuf,
    running: Mutex<()>,
}

impl Reloader {
    pub fn new(path: PathBuf) -> Reloader {
        Reloader {
            path,
            running: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads, validates, builds and swaps in the config file; `trigger` names who asked
    /// (`watch`, `sighup`, `admin`) for the log and metric. On error the old config serves.
    pub fn reload(&self, gateway: &Gateway, trigger: &'static str) -> Result<Reloaded, String> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let result = self.try_reload(gateway).map(|(models, policies)| Reloaded {
            models,
            policies,
            took_ms: started.elapsed().as_millis() as u64,
        });
        let label = if result.is_ok() { "ok" } else { "rejected" };
        metrics::counter!("switchyard_config_reloads_total", "trigger" => trigger, "result" => label)
            .increment(1);
        match &result {
            Ok(r) => tracing::info!(
                trigger,
                file = %self.path.display(),
                models = r.models,
                took_ms = r.took_ms,
                "config reloaded"
            ),
            Err(error) => tracing::error!(
                trigger,
                file = %self.path.display(),
                %error,
                "config reload rejected; the previous config keeps serving"
            ),
        }
        result
    }

    /// The reload itself: the model count and the policies in use, or why it was refused.
    fn try_reload(&self, gateway: &Gateway) -> Result<(usize, Vec<String>), String> {
        let mut config = Config::load(&self.path).map_err(|e| e.to_string())?;
        let running = gateway.live();
        let server = &running.config.server;
        if config.server.http_addr != server.http_addr
            || config.server.grpc_addr != server.grpc_addr
        {
            tracing::warn!("listen addresses cannot change while serving; restart to apply them");
            config.server.http_addr = server.http_addr;
            config.server.grpc_addr = server.grpc_addr;
        }
        gateway.reload(config).map_err(|e| match e {
            crate::error::Error::Internal { detail } => detail,
            other => other.to_string(),
        })?;
        let live = gateway.live();
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

/// Whether a changed path matters: the config file itself, or a policy or its cases.
fn relevant(config: &Path, path: &Path) -> bool {
    let is_config = path
        .file_name()
        .is_some_and(|n| Some(n) == config.file_name());
    let is_script = path.extension().is_some_and(|e| e == "lua" || e == "json");
    is_config || is_script
}

/// Starts watching the config and scripts folders now (so no save made after this returns
/// is missed) and returns the task that reloads after each settled change until
/// `shutdown`. Fails if the gateway has no config file or the watcher cannot start.
pub fn watch(
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<impl std::future::Future<Output = ()>, String> {
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
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Let the save finish: drain events until SETTLE passes quietly.
            while let Ok(Some(())) = tokio::time::timeout(SETTLE, rx.recv()).await {}
            let gw = gateway.clone();
            let _ = tokio::task::spawn_blocking(move || gw.reload_config_file("watch")).await;
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
/// killing the process) and returns the task that reloads on each one until `shutdown`.
#[cfg(unix)]
pub fn on_sighup(
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup =
        signal(SignalKind::hangup()).map_err(|e| format!("cannot listen for SIGHUP: {e}"))?;
    Ok(async move {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                got = hup.recv() => if got.is_none() { return },
            }
            let gw = gateway.clone();
            let _ = tokio::task::spawn_blocking(move || gw.reload_config_file("sighup")).await;
        }
    })
}
