//! The child processes under test: start, pin, watch and stop them.

use std::{
    fs,
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use crate::{Res, SWITCHYARD, lock};

/// The cores a process may run on, in taskset's list form (`0`, `0,1`).
#[derive(Clone, Debug)]
pub(crate) struct Cores(String);

impl Cores {
    /// Cores `0` to `n - 1`.
    pub(crate) fn first(n: usize) -> Cores {
        Cores(
            (0..n.max(1))
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    pub(crate) fn list(&self) -> &str {
        &self.0
    }
}

impl From<usize> for Cores {
    fn from(core: usize) -> Cores {
        Cores(core.to_string())
    }
}

/// Every process started here, so that Ctrl-C or SIGTERM does not leave them running.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// On SIGINT or SIGTERM: kills the children started here (by pid), removes `tmp`, exits.
pub(crate) fn stop_children_on_signal(tmp: PathBuf) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        let pids: Vec<String> = lock(&CHILDREN).iter().map(u32::to_string).collect();
        if !pids.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        }
        let _ = fs::remove_dir_all(&tmp);
        eprintln!("bench interrupted; stopped {} child processes", pids.len());
        std::process::exit(130);
    });
}

/// A temporary directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// `$TMPDIR/switchyard-{bench}-{pid}`.
    pub(crate) fn new(bench: &str) -> Res<TempDir> {
        let dir = std::env::temp_dir().join(format!("switchyard-{bench}-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process started here, pinned with taskset (which execs it, so the child's pid is
/// the target's). Killed on drop.
pub(crate) struct Spawned {
    name: String,
    child: Mutex<Child>,
    pid: u32,
    pub(crate) addr: SocketAddr,
    /// More listening addresses (nginx: one per upstream after the first).
    pub(crate) more_addrs: Vec<SocketAddr>,
    /// A gateway's gRPC listener, when its config opens one.
    pub(crate) grpc: Option<SocketAddr>,
    /// Lines seen on stdout.
    pub(crate) lines: Arc<AtomicU64>,
    stderr: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let child = match self.child.get_mut() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Spawned {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    fn start(
        tmp: &TempDir,
        name: &str,
        cores: &Cores,
        program: &str,
        args: &[String],
        env: &[(&str, Option<&str>)],
    ) -> Res<(Child, PathBuf)> {
        let stderr_path = tmp.path().join(format!("{name}.stderr"));
        let stderr = fs::File::create(&stderr_path)
            .map_err(|e| format!("creating {}: {e}", stderr_path.display()))?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(cores.list())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {name} ({program}): {e}"))?;
        lock(&CHILDREN).push(child.id());
        Ok((child, stderr_path))
    }

    /// Reads stdout on a thread: lines are sent until one contains `marker`, then only
    /// counted, so the child's pipe never fills.
    fn watch_stdout(
        child: &mut Child,
        marker: &'static str,
    ) -> (mpsc::Receiver<String>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::channel();
        let lines = Arc::new(AtomicU64::new(0));
        let Some(stdout) = child.stdout.take() else {
            return (rx, lines);
        };
        let counter = lines.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 16, stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let found = line.contains(marker);
                        let _ = tx.send(line.clone());
                        if found {
                            break;
                        }
                    }
                }
            }
            drop(tx);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let nl = buf[..n].iter().filter(|&&b| b == b'\n').count();
                        counter.fetch_add(nl as u64, Ordering::Relaxed);
                    }
                }
            }
        });
        (rx, lines)
    }

    /// Waits for the banner line containing `marker` and returns it.
    fn banner(name: &str, rx: &mpsc::Receiver<String>, marker: &str, stderr: &Path) -> Res<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(marker) => return Ok(line.trim().to_owned()),
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "{name} did not print `{marker}` within 15 s; stderr: {}",
                        read_tail(stderr)
                    ));
                }
            }
        }
    }

    pub(crate) fn mock(
        tmp: &TempDir,
        cores: impl Into<Cores>,
        name: &str,
        fault: &str,
    ) -> Res<Spawned> {
        let args = vec![
            "mock".to_owned(),
            "--addr".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--name".to_owned(),
            format!("bench-{name}"),
            "--fault".to_owned(),
            fault.to_owned(),
        ];
        let label = format!("mock-{name}");
        let (mut child, stderr) = Self::start(tmp, &label, &cores.into(), SWITCHYARD, &args, &[])?;
        let pid = child.id();
        let (rx, lines) = Self::watch_stdout(&mut child, "listening");
        let spawned_child = Mutex::new(child);
        let banner = match Self::banner(&label, &rx, "listening", &stderr) {
            Ok(b) => b,
            Err(e) => {
                kill(spawned_child);
                return Err(e);
            }
        };
        // `switchyard mock listening: http://127.0.0.1:PORT/v1`
        let addr = banner
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok());
        let Some(addr) = addr else {
            kill(spawned_child);
            return Err(format!("{label}: cannot read the address from `{banner}`"));
        };
        Ok(Spawned {
            name: label,
            child: spawned_child,
            pid,
            addr,
            more_addrs: Vec::new(),
            grpc: None,
            lines,
            stderr,
        })
    }

    /// A gateway serving `config` (TOML text), written to `{label}.toml` in `tmp`.
    pub(crate) fn gateway(
        tmp: &TempDir,
        cores: impl Into<Cores>,
        label: &str,
        config: &str,
        rust_log: Option<&str>,
    ) -> Res<Spawned> {
        let path = tmp.path().join(format!("{label}.toml"));
        fs::write(&path, config).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let args = vec![
            "serve".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ];
        let (mut child, stderr) = Self::start(
            tmp,
            label,
            &cores.into(),
            SWITCHYARD,
            &args,
            &[("RUST_LOG", rust_log)],
        )?;
        let pid = child.id();
        let (rx, lines) = Self::watch_stdout(&mut child, "switchyard listening:");
        let spawned_child = Mutex::new(child);
        let banner = match Self::banner(label, &rx, "switchyard listening:", &stderr) {
            Ok(b) => b,
            Err(e) => {
                kill(spawned_child);
                return Err(e);
            }
        };
        // `switchyard listening: http=ADDR grpc=ADDR`
        let addr = banner_addr(&banner, "http=");
        let Some(addr) = addr else {
            kill(spawned_child);
            return Err(format!("{label}: cannot read the address from `{banner}`"));
        };
        // `none` when the config opens no gRPC listener.
        let grpc = banner_addr(&banner, "grpc=");
        Ok(Spawned {
            name: label.to_owned(),
            child: spawned_child,
            pid,
            addr,
            more_addrs: Vec::new(),
            grpc,
            lines,
            stderr,
        })
    }

    /// nginx with one listening port per upstream, in order: `addr` proxies to the first,
    /// `more_addrs` to the others.
    pub(crate) fn nginx(
        tmp: &TempDir,
        bin: &Path,
        core: usize,
        upstreams: &[NginxUpstream],
    ) -> Res<Spawned> {
        let dir = tmp.path().join("nginx");
        for sub in ["", "body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| format!("creating nginx dirs: {e}"))?;
        }
        let ports = upstreams
            .iter()
            .map(|_| free_port())
            .collect::<Res<Vec<u16>>>()?;
        let d = dir.display();
        let mut servers = String::new();
        for (u, port) in upstreams.iter().zip(&ports) {
            servers.push_str(&format!(
                "    upstream {0} {{ server {1}; keepalive {2}; }}\n\
                 \x20   server {{\n        listen 127.0.0.1:{port};\n        location / {{\n\
                 \x20           proxy_pass http://{0};\n            proxy_http_version 1.1;\n\
                 \x20           proxy_set_header Connection \"\";\n            \
                 proxy_buffering off;\n        }}\n    }}\n",
                u.name, u.addr, u.keepalive
            ));
        }
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n    access_log off;\n\
             \x20   client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n{servers}}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, config).map_err(|e| format!("writing nginx.conf: {e}"))?;
        let args = vec![
            "-p".to_owned(),
            format!("{d}/"),
            "-e".to_owned(),
            format!("{d}/error.log"),
            "-c".to_owned(),
            conf_path.display().to_string(),
        ];
        let program = bin.display().to_string();
        let (mut child, stderr) = Self::start(tmp, "nginx", &core.into(), &program, &args, &[])?;
        let pid = child.id();
        let (_rx, lines) = Self::watch_stdout(&mut child, "\u{0}never");
        let local = |port: &u16| SocketAddr::from(([127, 0, 0, 1], *port));
        let spawned = Spawned {
            name: "nginx".into(),
            child: Mutex::new(child),
            pid,
            addr: ports.first().map(local).ok_or("nginx needs an upstream")?,
            more_addrs: ports.iter().skip(1).map(local).collect(),
            grpc: None,
            lines,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in &ports {
            loop {
                spawned.check_alive().map_err(|e| {
                    format!("{e}; error.log: {}", read_tail(&dir.join("error.log")))
                })?;
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "nginx did not listen on {port} within 10 s; error.log: {}",
                        read_tail(&dir.join("error.log"))
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(spawned)
    }

    /// Debian's `redis-server` on a free port (no persistence), answering `PING`.
    pub(crate) fn redis(tmp: &TempDir, core: usize) -> Res<Spawned> {
        let port = free_port()?;
        let dir = tmp.path().join("redis");
        fs::create_dir_all(&dir).map_err(|e| format!("creating the redis dir: {e}"))?;
        let args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let (mut child, stderr) =
            Self::start(tmp, "redis", &core.into(), "redis-server", &args, &[])?;
        let pid = child.id();
        let (_rx, lines) = Self::watch_stdout(&mut child, "\u{0}never");
        let spawned = Spawned {
            name: "redis".into(),
            child: Mutex::new(child),
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            more_addrs: Vec::new(),
            grpc: None,
            lines,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis_command(spawned.addr, "PING").as_deref() != Some("+PONG") {
            spawned.check_alive()?;
            if Instant::now() > deadline {
                return Err(format!("redis-server did not answer on {port} within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(spawned)
    }

    pub(crate) fn check_alive(&self) -> Res<()> {
        let mut child = match self.child.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); stderr: {}",
                self.name,
                read_tail(&self.stderr)
            )),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

/// One upstream nginx proxies to, on a listening port of its own.
pub(crate) struct NginxUpstream {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
    /// Idle keep-alive connections nginx keeps to it.
    pub(crate) keepalive: usize,
}

fn kill(child: Mutex<Child>) {
    let mut child = match child.into_inner() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    let _ = child.kill();
    let _ = child.wait();
}

fn read_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(1500);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].trim().to_owned()
}

/// One inline Redis command's raw reply (RESP), or `None` when Redis does not answer.
pub(crate) fn redis_command(addr: SocketAddr, command: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).ok()?;
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        // A simple reply ends at its first CRLF; a bulk one (`$LEN`) after LEN bytes more.
        let complete = match text.strip_prefix('$') {
            Some(rest) => rest
                .split_once("\r\n")
                .is_some_and(|(len, body)| len.parse::<usize>().is_ok_and(|l| body.len() >= l + 2)),
            None => text.contains("\r\n"),
        };
        if n == 0 || complete {
            return Some(text.trim_end().to_owned());
        }
    }
}

fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

pub(crate) fn find_nginx() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// The address after `name` (`http=`, `grpc=`) in the gateway's start-up banner; `None`
/// when absent or not an address (`grpc=none`).
fn banner_addr(banner: &str, name: &str) -> Option<SocketAddr> {
    banner
        .split(name)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
}
