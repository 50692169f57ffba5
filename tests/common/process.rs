//! The `switchyard` binary as a user runs it, in a process of its own.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use super::{client, hello, within};

/// The gateway binary cargo built for the integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Provider key variables the embedded default looks at.
pub const KEY_VARS: &[&str] = &[
    "OPENAI_API_KEY",
    "DEEPSEEK_API_KEY",
    "MISTRAL_API_KEY",
    "DASHSCOPE_API_KEY",
    "FIREWORKS_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "XAI_API_KEY",
    "OPENROUTER_API_KEY",
];

/// A running `switchyard serve`, killed on drop; its stdout lines arrive on `lines`.
pub struct Served {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// `host:port` of the HTTP listener.
    pub http: String,
}

impl Served {
    pub fn start(args: &[&str], dir: &std::path::Path) -> Served {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in KEY_VARS {
            cmd.env_remove(var);
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut served = Served {
            child,
            lines,
            http: String::new(),
        };
        let banner = served.wait_for("switchyard listening: ");
        let http = banner
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .unwrap();
        served.http = http.to_owned();
        served
    }

    /// The first line containing `needle`, waiting at most 20 s.
    pub fn wait_for(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no line containing {needle:?} within 20 s"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    pub async fn chat(&self) -> reqwest::Response {
        within(
            client()
                .post(format!("http://{}/v1/chat/completions", self.http))
                .json(&hello(false))
                .send(),
        )
        .await
        .unwrap()
    }

    pub fn drain(&self) -> String {
        let mut out = String::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(300)) {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
