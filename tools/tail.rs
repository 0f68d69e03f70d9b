//! `polypy-tail`: watch the engine's book stream from a terminal, and check it.
//!
//! Connects to `ws://HOST:PORT/ws` (docs/stream-api.md), subscribes, rebuilds every book from
//! snapshots and deltas with the engine's own book code (`polypy::stream::books`), checks
//! that each book's `seq` rises by one after its snapshot and that every hash the server
//! gives equals the rebuilt book's venue hash. Prints a one-line live summary, or every
//! message as a JSON line with `--json`. Exits 1 when a check failed (with `--duration`).
//! With `--nats nats://…` it rebuilds the books from NATS instead (`polypy::nats::consumer`:
//! KV snapshots for a late join, seq continuity, gaps repaired through snapshots).

use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use polypy::stream::books::{Applied, ClientBooks};
use serde_json::Value;
use tungstenite::{Message, WebSocket};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ChannelArg {
    /// Snapshots + sequenced deltas, trades, tick sizes, status: books are rebuilt and checked.
    Book,
    /// Best bid/ask when it changes.
    Bbo,
    /// Trades.
    Trades,
}

/// Watch polypy's live book stream: subscribe, rebuild every book from snapshots + deltas,
/// check seq continuity and the venue hash of every rebuilt book, print a live summary.
///
/// Without --asset or --market it follows every book (--all). The summary line shows books
/// followed, messages per second, snapshots, deltas, hashes checked and failed, seq gaps,
/// trusted books and the age of the newest venue timestamp. With --json every server message
/// is printed as one line instead (problems still go to stderr).
#[derive(Debug, Parser)]
#[command(name = "polypy-tail", version)]
struct Args {
    /// Stream URL.
    #[arg(long, default_value = "ws://127.0.0.1:8081/ws")]
    url: String,
    /// Token id to follow (repeatable).
    #[arg(long = "asset")]
    assets: Vec<String>,
    /// Condition id whose tokens to follow (repeatable).
    #[arg(long = "market")]
    markets: Vec<String>,
    /// Follow every book (the default when no --asset/--market is given).
    #[arg(long)]
    all: bool,
    /// Channel.
    #[arg(long, value_enum, default_value_t = ChannelArg::Book)]
    channel: ChannelArg,
    /// Levels per side in snapshots (0 = all; hashes are then not checked).
    #[arg(long, default_value_t = 0)]
    depth: u32,
    /// Conflate: at most one snapshot per book per this many ms (0 = every change).
    #[arg(long, default_value_t = 0)]
    interval_ms: u32,
    /// Print every server message as one JSON line instead of the summary.
    #[arg(long)]
    json: bool,
    /// Stop after this many seconds and print the final summary (exit 1 if a check failed).
    #[arg(long)]
    duration: Option<f64>,
    /// Refresh interval of the summary line, ms.
    #[arg(long, default_value_t = 1000)]
    every_ms: u64,
    /// Read the books from NATS instead of the stream (`nats://HOST:PORT`): the book
    /// subjects of --asset (the first), --market (the first) or all, joining late through
    /// the KV snapshots (docs/scaling.md). Book channel and summary only.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// With --nats: the publisher's --nats-prefix.
    #[arg(long, default_value = polypy::nats::DEFAULT_PREFIX)]
    nats_prefix: String,
}

/// `--nats`: rebuild the books from NATS, print the summary, exit 1 on a failed check.
fn tail_nats(args: &Args, url: &str) -> anyhow::Result<()> {
    use polypy::nats::consumer::{ConsumerConfig, Filter, NatsConsumer};
    let mut config = ConsumerConfig::new(url, &args.nats_prefix);
    config.filter = match (args.assets.first(), args.markets.first()) {
        (Some(a), _) => Filter::Token(a.clone()),
        (None, Some(m)) => Filter::Market(m.clone()),
        (None, None) => Filter::All,
    };
    eprintln!("following {} on {url}", config.subject());
    let mut consumer = NatsConsumer::start(config)?;
    let started = Instant::now();
    let end = args
        .duration
        .map(|d| started + Duration::from_secs_f64(d.max(0.0)));
    let every = Duration::from_millis(args.every_ms.max(50));
    let line = |c: &NatsConsumer| {
        let s = c.state();
        let n = s.counts;
        format!(
            "{} connected={} kv={} out_of_sync={} live_snapshots={} kv_snapshots={} \
             stale={} gaps={} recoveries={}",
            summary(&s.books, n.messages, 0.0, 0),
            s.connected,
            s.kv_ready,
            s.out_of_sync().len(),
            n.live_snapshots,
            n.kv_snapshots,
            n.stale,
            n.gaps,
            n.recoveries
        )
    };
    while end.is_none_or(|e| Instant::now() < e) {
        consumer.run_for(every);
        eprint!("\r{}   ", line(&consumer));
    }
    eprintln!("\nfinal: {}", line(&consumer));
    let c = consumer.state().books.checks;
    if c.hash_mismatches + c.malformed > 0 {
        bail!("checks failed: {c:?}");
    }
    Ok(())
}

fn connect(url: &str) -> anyhow::Result<WebSocket<TcpStream>> {
    let rest = url
        .strip_prefix("ws://")
        .context("only ws:// URLs are supported")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let tcp = TcpStream::connect(hostport).with_context(|| format!("connecting to {hostport}"))?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_millis(100)))?;
    let (ws, _) = tungstenite::client(url, tcp).context("WebSocket handshake")?;
    Ok(ws)
}

fn request(a: &Args) -> String {
    let channel = match a.channel {
        ChannelArg::Book => "book",
        ChannelArg::Bbo => "bbo",
        ChannelArg::Trades => "trades",
    };
    let mut req = serde_json::json!({"op": "subscribe", "channel": channel});
    if !a.assets.is_empty() {
        req["assets"] = serde_json::json!(a.assets);
    } else if !a.markets.is_empty() {
        req["markets"] = serde_json::json!(a.markets);
    } else {
        req["all"] = true.into();
    }
    if a.depth > 0 {
        req["depth"] = a.depth.into();
    }
    if a.interval_ms > 0 {
        req["interval_ms"] = a.interval_ms.into();
    }
    req.to_string()
}

fn summary(books: &ClientBooks, msgs: u64, rate: f64, newest_ts: u64) -> String {
    let c = &books.checks;
    let trusted = books.books.values().filter(|b| b.trusted).count();
    let now_ms = jiff::Timestamp::now().as_millisecond().max(0) as u64;
    let age = if newest_ts > 0 {
        format!("{} ms", now_ms.saturating_sub(newest_ts))
    } else {
        "-".into()
    };
    format!(
        "books={} trusted={trusted} msgs={msgs} ({rate:.0}/s) snapshots={} deltas={} \
         hashes={} bad_hashes={} seq_gaps={} orphans={} age={age}",
        books.books.len(),
        c.snapshots,
        c.deltas,
        c.hashes_checked,
        c.hash_mismatches,
        c.seq_gaps,
        c.orphans,
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = args.nats.clone() {
        return tail_nats(&args, &url);
    }
    let mut ws = connect(&args.url)?;
    ws.send(Message::text(request(&args)))?;
    let mut books = ClientBooks::new();
    let started = Instant::now();
    let end = args
        .duration
        .map(|d| started + Duration::from_secs_f64(d.max(0.0)));
    let every = Duration::from_millis(args.every_ms.max(50));
    let mut next = Instant::now() + every;
    let (mut msgs, mut last_msgs, mut newest_ts) = (0u64, 0u64, 0u64);
    let mut last_at = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        if end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        match ws.read() {
            Ok(Message::Text(t)) => {
                msgs += 1;
                let v: Value = match serde_json::from_str(t.as_str()) {
                    Ok(v) => v,
                    Err(e) => {
                        eprintln!("unparsable message: {e}");
                        continue;
                    }
                };
                if let Some(ts) = v["ts"].as_str().and_then(|s| s.parse::<u64>().ok()) {
                    newest_ts = newest_ts.max(ts);
                }
                let applied = books.apply(&v);
                if args.json {
                    writeln!(out, "{t}")?;
                }
                match applied {
                    Applied::Problem => eprintln!(
                        "check failed on {} {} seq {}: {:?}",
                        v["type"], v["asset"], v["seq"], books.checks
                    ),
                    Applied::Other if v["type"] == "error" => {
                        eprintln!("server error: {}", v["error"]);
                    }
                    _ => {}
                }
            }
            Ok(Message::Close(f)) => {
                eprintln!("\nserver closed the stream: {f:?}");
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                eprintln!("\nstream ended: {e}");
                break;
            }
        }
        if !args.json && Instant::now() >= next {
            let dt = last_at.elapsed().as_secs_f64().max(1e-9);
            let rate = (msgs - last_msgs) as f64 / dt;
            (last_msgs, last_at) = (msgs, Instant::now());
            next = Instant::now() + every;
            eprint!("\r{}   ", summary(&books, msgs, rate, newest_ts));
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    let rate = msgs as f64 / started.elapsed().as_secs_f64().max(1e-9);
    eprintln!("\nfinal: {}", summary(&books, msgs, rate, newest_ts));
    if args.json {
        out.flush()?;
    }
    let c = books.checks;
    if c.seq_gaps + c.hash_mismatches + c.orphans + c.malformed > 0 {
        bail!("checks failed: {c:?}");
    }
    Ok(())
}
