//! The human-readable report of one run.

use super::*;

pub(super) fn opt_s(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "never".to_string(), |x| format!("{x:.2} s"))
}

pub(super) fn print_text(r: &Value) {
    let c = &r["config"];
    println!(
        "polypy-loadtest: {} markets ({} assets), {} msgs/s, {} assets/connection, window {} s (+{} s warm-up), engine args {}",
        c["markets"],
        c["assets"],
        c["rate"],
        c["assets_per_connection"],
        c["secs"],
        c["warmup_secs"],
        c["engine_args"]
    );
    let s = &r["startup"];
    println!(
        "start-up     sim ready {:.2} s; engine: first /stats {}, all subscribed {}, all trusted {}; connections {} ({} active)",
        f(r, "/startup/sim_ready_s"),
        opt_s(&s["first_stats_s"]),
        opt_s(&s["all_subscribed_s"]),
        opt_s(&s["all_trusted_s"]),
        s["connections"],
        s["active_connections"]
    );
    if let Some(tl) = s["timeline"].as_array() {
        let pts: Vec<String> = tl
            .iter()
            .map(|p| {
                format!(
                    "{:.1}s {}/{}/{}/{}",
                    f(p, "/t_s"),
                    p["known_assets"],
                    p["subscribed"],
                    p["connected"],
                    p["trusted"]
                )
            })
            .collect();
        println!(
            "             timeline (known/subscribed/connected conns/trusted): {}",
            pts.join(", ")
        );
    }
    if !s["stuck"].is_null() {
        println!("NOT ALL TRUSTED: {}", s["stuck"]);
    }
    println!(
        "memory       VmRSS {:.1} MB (VmHWM {:.1}) at all trusted; VmRSS {:.1} MB (VmHWM {:.1}) at end",
        f(r, "/rss/at_all_trusted/vm_rss_mb"),
        f(r, "/rss/at_all_trusted/vm_hwm_mb"),
        f(r, "/rss/at_end/vm_rss_mb"),
        f(r, "/rss/at_end/vm_hwm_mb")
    );
    println!(
        "flow         {:.0} msgs/s decoded ({:.0} frames/s, {:.0} routed/s) over {:.1} s; CPU (100% = 1 core of {}) engine {:.0}%, sim {:.0}%, other processes {:.0}%",
        f(r, "/flow/messages_per_s"),
        f(r, "/flow/frames_per_s"),
        f(r, "/flow/routed_per_s"),
        f(r, "/flow/window_s"),
        r["flow"]["cores"],
        f(r, "/flow/engine_cpu_pct"),
        f(r, "/flow/sim_cpu_pct"),
        f(r, "/flow/other_processes_cpu_pct")
    );
    println!(
        "wire→book    window: p50 {:.1} µs, p99 {:.1} µs, p999 {:.1} µs ({} samples; ≤10 µs {:.1}%, ≤50 µs {:.1}%, ≤100 µs {:.1}%)",
        f(r, "/latency_window/p50_us"),
        f(r, "/latency_window/p99_us"),
        f(r, "/latency_window/p999_us"),
        r["latency_window"]["samples"],
        f(r, "/latency_window/share_le_10us") * 100.0,
        f(r, "/latency_window/share_le_50us") * 100.0,
        f(r, "/latency_window/share_le_100us") * 100.0
    );
    println!(
        "             since start (/stats): p50 {:.1} µs, p99 {:.1} µs, p999 {:.1} µs, max {:.0} µs ({} samples)",
        f(r, "/latency_cumulative/p50_us"),
        f(r, "/latency_cumulative/p99_us"),
        f(r, "/latency_cumulative/p999_us"),
        f(r, "/latency_cumulative/max_us"),
        r["latency_cumulative"]["samples"]
    );
    let nonzero: Vec<String> = r["flow"]["counters"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v["total"].as_u64().unwrap_or(0) > 0)
                .map(|(k, v)| format!("{k}={} ({} in window)", v["total"], v["in_window"]))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "resyncs etc. {}",
        if nonzero.is_empty() {
            "all zero".to_string()
        } else {
            nonzero.join(", ")
        }
    );
    for (name, label) in [
        ("health", "/health (keep-alive)"),
        ("stats", "/stats (keep-alive)"),
        ("stats_fresh_connection", "/stats (new conn each)"),
    ] {
        let h = &r["http"][name];
        println!(
            "GET {label:<23} {} requests: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} non-200, {} B)",
            h["requests"],
            f(h, "/p50_ms"),
            f(h, "/p99_ms"),
            f(h, "/max_ms"),
            h["non_200"],
            h["avg_body_bytes"]
        );
    }
    let e = &r["shutdown"]["engine"];
    println!(
        "shutdown     engine {} after {:.3} s{}; sim {}; engine log: {} WARN, {} ERROR lines",
        e["status"].as_str().unwrap_or("?"),
        f(e, "/secs_after_sigterm"),
        if e["sigkilled"].as_bool() == Some(true) {
            " (SIGKILLed)"
        } else {
            ""
        },
        r["shutdown"]["sim_status"].as_str().unwrap_or("?"),
        r["shutdown"]["engine_log_warn_lines"],
        r["shutdown"]["engine_log_error_lines"]
    );
    if let Some(t) = r["shutdown"]["engine_log_tail"].as_str() {
        println!("engine log tail:\n{t}");
    }
    if let Some(checks) = r["checks"].as_array() {
        for c in checks {
            println!(
                "check        {} {} (value {:.3}): {}",
                c["check"].as_str().unwrap_or("?"),
                c["target"],
                f(c, "/value"),
                if c["met"].as_bool() == Some(true) {
                    "MET"
                } else {
                    "MISSED"
                }
            );
        }
    }
    println!(
        "logs         {}",
        r["config"]["logs"].as_str().unwrap_or("?")
    );
}
