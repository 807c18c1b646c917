//! A webhook receiver on a loopback port: it records every request (headers and
//! body) and answers each with the next status of a script (200 once the script
//! runs out), so a test sees what was sent, how often, and how it was signed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use crate::HarnessError;

/// One request as the receiver got it.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct Log {
    script: VecDeque<u16>,
    received: Vec<Received>,
}

/// The receiver; it stops when dropped.
pub struct WebhookReceiver {
    /// Where to send: `http://127.0.0.1:<port>/hook`.
    pub url: String,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Answers the first requests with `script`'s statuses in turn, then 200.
    pub async fn start(script: &[u16]) -> Result<Self, HarnessError> {
        let log = Arc::new(Mutex::new(Log {
            script: script.iter().copied().collect(),
            received: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(log.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, log, task })
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.log
            .lock()
            .map(|l| l.received.clone())
            .unwrap_or_default()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(log): State<Arc<Mutex<Log>>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let status = match log.lock() {
        Ok(mut l) => {
            l.received.push(Received { headers, body });
            l.script.pop_front().unwrap_or(200)
        }
        Err(_) => 500,
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
