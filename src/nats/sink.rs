//! THREAD `nats`: the publisher's async side (a tokio current-thread runtime, `async-nats`).
//!
//! One task takes what the stream thread queued ([`Out`]) in batches and publishes it; a
//! second one owns the KV bucket (created when missing) and writes snapshots with a bounded
//! number in flight. The client reconnects by itself with capped exponential backoff; its
//! events drive [`NatsStats::connected`] and the generation (see the module docs of `nats`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::mpsc::Receiver;

use super::{NatsConfig, NatsStats, Out};

/// Messages taken from the channel at once.
const BATCH: usize = 1024;
/// Longest a publication may wait for room in the client's buffer before it is dropped
/// (the connection is then stalled or lost; the generation is bumped).
const PUBLISH_WAIT: Duration = Duration::from_millis(100);
/// Longest wait for the last flush at shutdown.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Reconnect delay: 50 ms doubling per failed attempt, at most 1 s, with ±25 % jitter.
fn backoff(attempts: usize) -> Duration {
    let base = 50u64 << attempts.min(5);
    let ms = base.min(1000);
    let jitter = fastrand::u64(0..=ms / 2);
    Duration::from_millis(ms - ms / 4 + jitter)
}

pub(super) async fn run(config: NatsConfig, mut rx: Receiver<Out>, stats: Arc<NatsStats>) {
    let events = Arc::clone(&stats);
    let options = async_nats::ConnectOptions::new()
        .name("polypy")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(2)))
        .client_capacity(16_384)
        .reconnect_delay_callback(backoff)
        .event_callback(move |event| {
            on_event(&events, &event);
            async {}
        });
    let client = match options.connect(config.url.as_str()).await {
        Ok(c) => c,
        Err(e) => {
            // Only an unusable address gets here (connecting itself is retried).
            log::error!("NATS publisher cannot start: url={} error={e}", config.url);
            while rx.recv().await.is_some() {
                stats.drop_one(&stats.dropped_failed);
            }
            return;
        }
    };
    let (kv_tx, kv_rx) = tokio::sync::mpsc::channel::<Out>(config.kv_window.max(1) * 2);
    let kv_task = tokio::spawn(kv_loop(
        client.clone(),
        config.clone(),
        kv_rx,
        Arc::clone(&stats),
    ));
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            break;
        }
        for out in batch.drain(..) {
            match out {
                Out::Publish {
                    subject,
                    payload,
                    generation,
                    snapshot,
                } => {
                    let now = stats.generation.load(Ordering::Acquire);
                    if generation != now || !stats.connected.load(Ordering::Acquire) {
                        stats.drop_one(&stats.dropped_down);
                        continue;
                    }
                    match tokio::time::timeout(PUBLISH_WAIT, client.publish(subject, payload)).await
                    {
                        Ok(Ok(())) => {
                            stats.published.fetch_add(1, Ordering::Relaxed);
                            if snapshot {
                                stats.snapshots.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Err(_)) | Err(_) => {
                            stats.drop_one(&stats.dropped_failed);
                            stats.bump_generation();
                        }
                    }
                }
                kv @ (Out::KvPut { .. } | Out::KvDelete { .. }) => {
                    if let Err(e) = kv_tx.try_send(kv) {
                        // Cannot happen while the stream thread keeps to the window.
                        stats.kv_inflight.fetch_sub(1, Ordering::Relaxed);
                        stats.kv_errors.fetch_add(1, Ordering::Relaxed);
                        drop(e);
                        stats.kv_failed();
                    }
                }
            }
        }
    }
    drop(kv_tx);
    let _ = tokio::time::timeout(FLUSH_WAIT, kv_task).await;
    let _ = tokio::time::timeout(FLUSH_WAIT, client.flush()).await;
    log::info!("NATS publisher stopped");
}

fn on_event(stats: &NatsStats, event: &async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            if stats.connects.fetch_add(1, Ordering::Relaxed) > 0 {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                log::info!("NATS reconnected");
            } else {
                log::info!("NATS connected");
            }
            stats.connected.store(true, Ordering::Release);
            stats.bump_generation();
        }
        async_nats::Event::Disconnected => {
            stats.connected.store(false, Ordering::Release);
            stats.disconnects.fetch_add(1, Ordering::Relaxed);
            stats.bump_generation();
            log::warn!("NATS disconnected; reconnecting with backoff");
        }
        other => log::debug!("NATS event: {other}"),
    }
}

/// The bucket, created when missing. Its stream is made here with the key-value layout
/// (`KV_<bucket>` on `$KV.<bucket>.>`, one value per key, rollups, direct get) instead of
/// `create_key_value`, which first asks for the account's details in a shape that
/// nats-server 2.9 does not answer.
async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<jetstream::kv::Store, async_nats::Error> {
    if let Ok(s) = js.get_key_value(bucket).await {
        return Ok(s);
    }
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("polypy: latest snapshot per token".into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    Ok(js.get_key_value(bucket).await?)
}

/// Owns the KV bucket: creates it (retrying while NATS is away), then writes.
async fn kv_loop(
    client: async_nats::Client,
    config: NatsConfig,
    mut rx: Receiver<Out>,
    stats: Arc<NatsStats>,
) {
    let js = jetstream::new(client);
    let bucket = config.bucket();
    let mut attempt = 0;
    let store = loop {
        match open_bucket(&js, &bucket).await {
            Ok(s) => break s,
            Err(e) => {
                if attempt % 10 == 0 {
                    log::warn!("NATS KV bucket not ready: bucket={bucket} error={e}");
                }
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    };
    stats.kv_ready.store(true, Ordering::Release);
    log::info!("NATS KV bucket ready: bucket={bucket}");
    let limit = config.kv_window.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(op) = rx.recv().await {
        while tasks.len() >= limit {
            let _ = tasks.join_next().await;
        }
        while tasks.try_join_next().is_some() {}
        let (store, stats) = (store.clone(), Arc::clone(&stats));
        tasks.spawn(async move {
            match op {
                Out::KvPut { key, value } => match store.put(&*key, value).await {
                    Ok(_) => {
                        stats.kv_puts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        stats.kv_errors.fetch_add(1, Ordering::Relaxed);
                        stats.kv_failed();
                    }
                },
                Out::KvDelete { key } => match store.delete(&*key).await {
                    Ok(()) => {
                        stats.kv_deletes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        stats.kv_errors.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Out::Publish { .. } => {}
            }
            stats.kv_inflight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
}
