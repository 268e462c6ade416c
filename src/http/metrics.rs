//! `GET /metrics` in Prometheus format. Labels are route patterns, operation names, outcome,
//! registered environments and registry targets: never raw paths, user names or other
//! caller-supplied text, so no label takes unbounded values.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::service::App;

/// Latency buckets in seconds: sub-millisecond reads to multi-second DDL under load.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Records per audit batch (see `store::audit_queue`), up to its limit of 128.
const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// How often the histograms fold their samples into their buckets without a scrape.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide recorder (one per process, however many servers a test starts).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("buckets are not empty")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("pgua_audit_batch_size".into()),
                BATCH_SIZES,
            )
            .expect("buckets are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        // A histogram keeps every sample until upkeep folds them into its buckets; left to
        // scrapes alone, a server nobody scrapes grew by 8 bytes per sample — megabytes per
        // hundred thousand requests. One thread for the one recorder, whatever runtime
        // serves (tests start many).
        let kept = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    kept.run_upkeep();
                }
            })
            .expect("a thread can start");
        handle
    })
}

/// Counts requests and their latency by route pattern, method and status. A method outside
/// the standard ones is counted as `other`: hyper accepts any token as a method, and each
/// label value is a series kept for the process's life.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route: Arc<str> = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .into();
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    };
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("pgua_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("pgua_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

/// Renders every metric, with target pool gauges read at scrape time.
#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)),
)]
pub async fn render(State(app): State<Arc<App>>) -> Response {
    for pool in app.targets.pool_stats() {
        let target = pool.target;
        metrics::gauge!("pgua_target_pool_connections", "target" => target.clone())
            .set(pool.size as f64);
        metrics::gauge!("pgua_target_pool_idle", "target" => target.clone())
            .set(pool.available as f64);
        metrics::gauge!("pgua_target_pool_waiting", "target" => target).set(pool.waiting as f64);
    }
    for (channel, depth) in app.notifier.queue_depths() {
        metrics::gauge!("pgua_notify_queue_depth", "channel" => channel.to_owned())
            .set(depth as f64);
    }
    metrics::counter!("pgua_notify_dropped_total").absolute(app.notifier.dropped());
    metrics::counter!("pgua_notify_delivered_total").absolute(app.notifier.delivered());
    metrics::counter!("pgua_notify_failed_total").absolute(app.notifier.failed());
    let handle = handle();
    handle.run_upkeep();
    let mut res = handle.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}
