//! TLS on the listeners (`server.tls_cert`, `server.tls_key`): rustls with ring, ALPN `h2`
//! and `http/1.1`, and a certificate that is swapped when its files change.
//!
//! Every handshake asks [`ReloadingCert`] for the current certificate, held in an
//! `ArcSwap`; the watch task re-reads the files when they change (a notify watch on their
//! folders, so an editor's rename-over or a Kubernetes Secret's `..data` swap counts, and
//! a re-read every [`RECHECK`] for filesystems that send no events) and swaps the new pair
//! in only when it parses and the key matches the certificate. A bad pair (half-written,
//! mismatched) keeps the old certificate serving, with a log line. Connections already
//! open keep the session they negotiated; new ones get the new certificate.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwap;
use notify::{EventKind, RecursiveMode, Watcher};
use rustls::{
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::TlsFiles;

/// Quiet time after a file event before re-reading, so that writing the certificate and
/// then the key is one reload.
pub const SETTLE: Duration = Duration::from_millis(100);
/// How often the files are re-read even without an event.
pub const RECHECK: Duration = Duration::from_secs(60);

/// The certificate every new handshake gets.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// TLS for the gateway's listeners: the acceptor, and what reloads its certificate.
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<ReloadingCert>,
    files: TlsFiles,
    /// SHA-256 of the files as last loaded: a re-read of unchanged files swaps nothing.
    loaded: Mutex<[u8; 32]>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The files as read: the certificate chain's PEM, the key's, and a digest of both.
struct Read {
    cert: Vec<u8>,
    key: Vec<u8>,
    digest: [u8; 32],
}

fn read(files: &TlsFiles) -> Result<Read, String> {
    let cert = std::fs::read(&files.cert)
        .map_err(|e| format!("reading server.tls_cert {}: {e}", files.cert.display()))?;
    let key = std::fs::read(&files.key)
        .map_err(|e| format!("reading server.tls_key {}: {e}", files.key.display()))?;
    let mut h = Sha256::new();
    h.update(&cert);
    h.update([0u8]);
    h.update(&key);
    Ok(Read {
        cert,
        key,
        digest: h.finalize().into(),
    })
}

/// A certificate chain and its private key from PEM, checked to belong together.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls_cert is not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("server.tls_cert holds no certificate".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("server.tls_key is not a PEM private key: {e}"))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| format!("server.tls_cert and server.tls_key do not make a pair: {e}"))
}

impl Tls {
    /// Loads the files (relative paths against `dir`) and builds the acceptor; an error
    /// says which file and why.
    pub fn start(files: &TlsFiles, dir: &Path) -> Result<Tls, String> {
        let files = TlsFiles {
            cert: dir.join(&files.cert),
            key: dir.join(&files.key),
        };
        let Read { cert, key, digest } = read(&files)?;
        let resolver = Arc::new(ReloadingCert {
            current: ArcSwap::from_pointee(certified_key(&cert, &key)?),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
            files,
            loaded: Mutex::new(digest),
        })
    }

    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// Re-reads the files: `Ok(true)` when a new certificate was swapped in, `Ok(false)`
    /// when they had not changed, `Err` (the old certificate still serving) when the new
    /// ones cannot be used.
    pub fn reload(&self) -> Result<bool, String> {
        let Read { cert, key, digest } = read(&self.files)?;
        let mut loaded = self.loaded.lock().map_err(|_| "poisoned".to_owned())?;
        if *loaded == digest {
            return Ok(false);
        }
        let pair = certified_key(&cert, &key)?;
        self.resolver.current.store(Arc::new(pair));
        *loaded = digest;
        Ok(true)
    }

    /// Re-reads, logging and counting the outcome.
    fn reload_logged(&self) {
        let result = match self.reload() {
            Ok(false) => return,
            Ok(true) => {
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                "ok"
            }
            Err(error) => {
                tracing::error!(%error, "TLS certificate reload rejected; the previous certificate keeps serving");
                "rejected"
            }
        };
        metrics::counter!("switchyard_tls_reloads_total", "result" => result).increment(1);
    }

    /// Starts watching the files' folders now and returns the task that reloads on each
    /// settled change, and every [`RECHECK`], until `stop` is cancelled. When no watch
    /// can be set up, the re-read every [`RECHECK`] is all there is (and a warning says so).
    pub fn watch(
        self: Arc<Self>,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let watcher = match self.watcher(tx) {
            Ok(w) => Some(w),
            Err(error) => {
                tracing::warn!(%error, "cannot watch the TLS files; re-reading them every {} s", RECHECK.as_secs());
                None
            }
        };
        async move {
            let _watcher = watcher;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    Some(()) = rx.recv() => {
                        while let Ok(Some(())) = tokio::time::timeout(SETTLE, rx.recv()).await {}
                    }
                    () = tokio::time::sleep(RECHECK) => {}
                }
                let tls = self.clone();
                let _ = tokio::task::spawn_blocking(move || tls.reload_logged()).await;
            }
        }
    }

    /// A watch on the folders of the certificate and key, sending on `tx` when either
    /// file (or a Kubernetes volume's data link) changes.
    fn watcher(&self, tx: mpsc::UnboundedSender<()>) -> Result<notify::RecommendedWatcher, String> {
        let names: Vec<PathBuf> = [&self.files.cert, &self.files.key]
            .iter()
            .filter_map(|p| p.file_name().map(PathBuf::from))
            .collect();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                let changes = matches!(
                    event.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                );
                let ours = event.paths.iter().any(|p| {
                    p.file_name().is_some_and(|n| {
                        names.iter().any(|m| m.as_os_str() == n)
                            || n == crate::reload::KUBERNETES_DATA
                    })
                });
                if changes && ours {
                    let _ = tx.send(());
                }
            })
            .map_err(|e| format!("starting the certificate watcher: {e}"))?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for file in [&self.files.cert, &self.files.key] {
            let dir = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            if !dirs.contains(&dir) {
                watcher
                    .watch(&dir, RecursiveMode::NonRecursive)
                    .map_err(|e| format!("watching {}: {e}", dir.display()))?;
                dirs.push(dir);
            }
        }
        Ok(watcher)
    }
}
