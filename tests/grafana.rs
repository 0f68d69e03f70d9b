//! The operators' Grafana dashboard (`docs/grafana/polypy.json`) asks only for metrics the
//! engine exports: every `polypy_*` name in its queries must be a sample name of `/metrics`
//! (what `MetricsData::render` serves) of an engine running against the simulated exchange.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeSet;
use std::time::Duration;

use polypy::app::MetricsData;
use polypy::config::{EngineConfig, IdleMode};
use polypy::engine::Engine;
use polypy::sim::{Sim, SimConfig};

#[path = "support/truth.rs"]
mod truth;
use truth::wait_for;

/// Every query string of the dashboard (panel targets and template variables).
fn queries(dash: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            out.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = v["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

/// `polypy_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("polypy_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana/polypy.json"
    ))
    .expect("docs/grafana/polypy.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let wanted: BTreeSet<String> = queries(&dash)
        .iter()
        .flat_map(|q| metric_names(q))
        .collect();
    assert!(wanted.len() >= 20, "{wanted:?}");

    let sim = Sim::start(SimConfig {
        markets: 20,
        rate_per_sec: 200,
        new_market_every: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let engine = Engine::start(EngineConfig {
        ws_url: sim.ws_url(),
        gamma_url: sim.http_url(),
        pin_workers: false,
        idle: IdleMode::Park,
        // The stream's metrics too: on a free loopback port.
        stream: Some(polypy::stream::StreamConfig {
            host: "127.0.0.1".into(),
            port: 0,
            ..polypy::stream::StreamConfig::default()
        }),
        ..EngineConfig::default()
    })
    .expect("engine");
    wait_for("40 trusted books", Duration::from_secs(30), || {
        (engine.trusted_books() == 40).then_some(())
    });
    let metrics = wait_for("metrics", Duration::from_secs(5), || {
        MetricsData::gather(&engine, Duration::from_secs(5))?
            .render()
            .ok()
    });
    // Sample names, plus those of declared families (a labelled family, such as resyncs by
    // cause, has no sample until its first event).
    let mut exported: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split([' ', '{']).next())
        .map(str::to_string)
        .collect();
    for line in metrics.lines() {
        let mut words = line.split(' ');
        if let (Some("#"), Some("TYPE"), Some(family), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            exported.extend(suffixes.iter().map(|x| format!("{family}{x}")));
        }
    }
    let missing: Vec<&String> = wanted.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not export: {missing:?}"
    );
    engine.stop();
    sim.stop();
}
