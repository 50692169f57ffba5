//! Circuit states read from `GET /admin/health`, and opening a circuit before a slice.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{ADMIN_KEY, REQUEST_TIMEOUT, Res, cases::Case, http::Conn, tally::Tally};

/// How a case's circuit was found before its slices, and what it took to open it.
#[derive(Default, Clone, Copy)]
pub(crate) struct Arming {
    /// Slices checked.
    pub(crate) checks: u64,
    /// Of those, found open for long enough as they were.
    pub(crate) found_open: u64,
    /// Sequential requests sent to open it (the first five, and failed probes later).
    pub(crate) requests: u64,
    /// Time spent waiting for a cool-down about to end.
    pub(crate) waited: Duration,
}

impl Arming {
    pub(crate) fn merge(&mut self, o: Arming) {
        self.checks += o.checks;
        self.found_open += o.found_open;
        self.requests += o.requests;
        self.waited += o.waited;
    }
}

/// One deployment's circuit as `/admin/health` reports it.
struct Circuit {
    state: String,
    open_for: Option<Duration>,
}

/// Every deployment's circuit on a gateway, by id (`provider/model`).
async fn circuits(addr: SocketAddr) -> Res<Vec<(String, Circuit)>> {
    let req: Arc<[u8]> = Arc::from(
        format!(
            "GET /admin/health HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\
             User-Agent: switchyard-failover-bench\r\n\r\n"
        )
        .into_bytes(),
    );
    let mut conn = Conn::open(addr)
        .await
        .map_err(|e| format!("admin health on {addr}: connecting: {e}"))?;
    let mut body = Vec::new();
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(&req, &mut body))
        .await
        .map_err(|_| format!("admin health on {addr}: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("admin health on {addr}: {e}"))?;
    if reply.status != 200 {
        return Err(format!(
            "admin health on {addr}: HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&body)
        ));
    }
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("admin health on {addr}: not JSON: {e}"))?;
    let list = doc["deployments"]
        .as_array()
        .ok_or_else(|| format!("admin health on {addr}: no `deployments` list"))?;
    Ok(list
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap_or("?").to_owned(),
                Circuit {
                    state: d["circuit"].as_str().unwrap_or("?").to_owned(),
                    open_for: d["open_for_ms"].as_u64().map(Duration::from_millis),
                },
            )
        })
        .collect())
}

/// The circuit of deployment `id`; one the gateway has no record of yet reads closed.
async fn circuit(addr: SocketAddr, id: &str) -> Res<Circuit> {
    Ok(circuits(addr)
        .await?
        .into_iter()
        .find(|(i, _)| i == id)
        .map_or_else(
            || Circuit {
                state: "closed".to_owned(),
                open_for: None,
            },
            |(_, c)| c,
        ))
}

/// Which of `ids` are not closed on the gateway at `addr`, as `id (state)`.
pub(crate) async fn all_closed(addr: SocketAddr, ids: &[&str]) -> Res<Vec<String>> {
    Ok(circuits(addr)
        .await?
        .into_iter()
        .filter(|(id, c)| ids.contains(&id.as_str()) && c.state != "closed")
        .map(|(id, c)| format!("{id} ({})", c.state))
        .collect())
}

/// Makes sure the circuit of `id` (the first deployment of `case`) is open for at least
/// `need`: sends sequential requests while it is closed or its probe is due (each failure
/// counts; a failed probe opens it for a fresh cool-down), and waits out a cool-down that
/// would end too soon. Gives up after 75 s (a 60 s cool-down and room).
pub(crate) async fn ensure_open(
    case: &Case,
    id: &str,
    need: Duration,
    tally: &mut Tally,
) -> Res<Arming> {
    let deadline = Instant::now() + Duration::from_secs(75);
    let mut a = Arming {
        checks: 1,
        ..Arming::default()
    };
    let req = crate::http::chat_request(case.addr, case.model, false);
    let mut conn: Option<Conn> = None;
    let mut body = Vec::new();
    loop {
        if Instant::now() > deadline {
            return Err(format!(
                "{}: the circuit of {id} did not stay open for {need:?} within 75 s \
                 ({} requests sent)",
                case.name, a.requests
            ));
        }
        let c = circuit(case.addr, id).await?;
        match (c.state.as_str(), c.open_for) {
            ("open", Some(left)) if left >= need => {
                if a.requests == 0 && a.waited.is_zero() {
                    a.found_open = 1;
                }
                return Ok(a);
            }
            ("open", left) => {
                // Not long enough: wait for the probe to be due, then fail it.
                let wait = left.unwrap_or_default() + Duration::from_millis(20);
                tokio::time::sleep(wait).await;
                a.waited += wait;
            }
            _ => {
                let mut cn = match conn.take() {
                    Some(cn) => cn,
                    None => Conn::open(case.addr)
                        .await
                        .map_err(|e| format!("{}: connecting: {e}", case.name))?,
                };
                let out = tokio::time::timeout(REQUEST_TIMEOUT, cn.exchange(&req, &mut body)).await;
                a.requests += 1;
                if let Some(reply) = tally.record(out, &body, false, true)
                    && reply.keep_alive
                {
                    conn = Some(cn);
                }
            }
        }
    }
}
