//! HTTP on the management address: `/metrics` (Prometheus text 0.0.4),
//! `/livez` (every loop is making progress) and `/readyz` (spans up,
//! D-channels established, a core peer up, not draining; the body names each
//! failing check). hyper, HTTP/1.1, GET and HEAD only.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::board::OpsBoard;

/// Serves until the task is dropped. Each connection is its own task.
pub async fn serve(listener: TcpListener, board: Arc<OpsBoard>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "management HTTP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let board = board.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let board = board.clone();
                async move { Ok::<_, Infallible>(route(&board, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "management HTTP connection ended with an error");
            }
        });
    }
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Routes one request; public for tests.
pub fn route(board: &OpsBoard, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    respond(board, req.method(), req.uri().path())
}

pub fn respond(board: &OpsBoard, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET or HEAD\n".into(),
        );
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            board.metrics.render(),
        ),
        "/livez" => {
            let stuck = board.supervisor.stuck_loops();
            if stuck.is_empty() {
                reply(StatusCode::OK, "text/plain", "ok\n".into())
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("stuck loops: {}\n", stuck.join(", ")),
                )
            }
        }
        "/readyz" => {
            let checks = board.readiness();
            let failing: Vec<_> = checks.iter().filter(|c| !c.ok).collect();
            let mut body = String::new();
            for c in &checks {
                let mark = if c.ok { "ok  " } else { "FAIL" };
                if c.detail.is_empty() {
                    body.push_str(&format!("{mark} {}\n", c.name));
                } else {
                    body.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
                }
            }
            let code = if failing.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(code, "text/plain", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /livez or /readyz\n".into(),
        ),
    }
}
