//! `--rates` and `--compare-idle`: one full loadtest run per (idle mode, rate), then a table
//! of what each cost and how fast it was. Every row is a fresh sim and engine, so the rows are
//! independent; they run one after another in one invocation (side by side on one host).

use serde_json::{Value, json};

use super::{Args, f, run};

/// Idle modes `--compare-idle` runs, in table order.
const IDLE_MODES: [&str; 4] = ["adaptive", "park", "backoff", "spin"];

/// Runs every row; returns the report (`rows`) and whether a target was missed in any.
pub(super) fn sweep(args: &Args, rates: &[u64]) -> anyhow::Result<(Value, bool)> {
    let modes: Vec<Option<&str>> = if args.compare_idle {
        IDLE_MODES.iter().map(|m| Some(*m)).collect()
    } else {
        vec![None]
    };
    let mut rows = Vec::new();
    let mut failed = false;
    let total = modes.len() * rates.len();
    for mode in &modes {
        for &rate in rates {
            let mut a = args.clone();
            a.rate = rate;
            if let Some(m) = mode {
                a.engine_args.retain(|x| !x.starts_with("--idle"));
                a.engine_args.push(format!("--idle={m}"));
            }
            eprintln!(
                "polypy-loadtest: row {} of {total}: {} msgs/s, idle {}",
                rows.len() + 1,
                rate,
                mode.unwrap_or("(engine default)")
            );
            let (report, missed) = run(&a)?;
            failed |= missed;
            rows.push(row(&report, rate, mode.unwrap_or("default")));
        }
    }
    Ok((json!({ "rows": rows }), failed))
}

/// The figures of one run that the table shows.
fn row(r: &Value, rate: u64, idle: &str) -> Value {
    let msgs = f(r, "/flow/messages_per_s");
    let cpu = f(r, "/flow/engine_cpu_pct");
    json!({
        "idle": idle,
        "rate": rate,
        "messages_per_s": msgs,
        "engine_cpu_pct": cpu,
        // CPU-seconds per second ÷ messages per second, in µs.
        "engine_cpu_us_per_msg": if msgs > 0.0 { cpu / 100.0 / msgs * 1e6 } else { f64::NAN },
        "p50_us": f(r, "/latency_window/p50_us"),
        "p99_us": f(r, "/latency_window/p99_us"),
        "sim_cpu_pct": f(r, "/flow/sim_cpu_pct"),
        "other_processes_cpu_pct": f(r, "/flow/other_processes_cpu_pct"),
    })
}

/// The table (markdown, so it pastes into docs as is).
pub(super) fn print_table(report: &Value) {
    println!(
        "| idle | msgs/s asked | msgs/s decoded | engine CPU | CPU µs/msg | wire→book p50 µs | p99 µs | sim CPU | other CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in report["rows"].as_array().into_iter().flatten() {
        println!(
            "| {} | {} | {:.0} | {:.1} % | {:.1} | {:.1} | {:.1} | {:.0} % | {:.0} % |",
            r["idle"].as_str().unwrap_or("?"),
            r["rate"],
            f(r, "/messages_per_s"),
            f(r, "/engine_cpu_pct"),
            f(r, "/engine_cpu_us_per_msg"),
            f(r, "/p50_us"),
            f(r, "/p99_us"),
            f(r, "/sim_cpu_pct"),
            f(r, "/other_processes_cpu_pct"),
        );
    }
}
