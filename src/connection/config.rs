//! [`ConnectionConfig`]: per-connection settings, validated by construction (durations are
//! `Duration`s, sizes are bytes). `Default` holds the real venue's values (docs/venue-protocol.md §2.3:
//! text `PING` every 10 s; treat ~30 s without any inbound frame as a dead socket).
//! Built once at start-up on the main thread, cloned into each connection.

use std::{sync::Arc, time::Duration};

use rustls::{ClientConfig, RootCertStore};

/// Settings of one connection. Clone it per connection; the TLS config inside is shared.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// How often the text `PING` is sent while open. Default 10 s (the venue's keep-alive).
    /// Values below 1 ms count as 1 ms.
    pub ping_interval: Duration,
    /// No inbound frame at all (data, `PONG`, control) for this long → the connection is torn
    /// down with `ConnectionError::Silent`. Default 30 s (three missed `PONG`s).
    pub silence_timeout: Duration,
    /// TCP connect + TLS + WebSocket upgrade must finish within this. Default 10 s.
    pub handshake_timeout: Duration,
    /// TLS client configuration for `wss://`. `None`: webpki roots, built on the first `wss`
    /// connect of each connection; pass one shared [`webpki_client_config`] instead to build it
    /// once.
    pub tls: Option<Arc<ClientConfig>>,
    /// Largest accepted message and frame, in bytes. Default 16 MiB: initial dumps of a few
    /// hundred books arrive as one array frame (SSMD uses 2 MiB; nothing is documented).
    pub max_message_size: usize,
    /// tungstenite's read buffer, allocated once per socket. Default 64 KiB.
    pub read_buffer_size: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            ping_interval: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            tls: None,
            max_message_size: 16 << 20,
            read_buffer_size: 64 << 10,
        }
    }
}

impl ConnectionConfig {
    pub(crate) fn ws_config(&self) -> tungstenite::protocol::WebSocketConfig {
        tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}

/// A TLS client configuration trusting `roots`, with the ring provider (the crate builds rustls
/// without aws-lc) and rustls' safe default protocol versions.
///
/// # Errors
/// rustls' error if the provider supports none of the default protocol versions.
pub fn client_config_with_roots(roots: RootCertStore) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The production TLS client configuration: Mozilla's roots from `webpki-roots`. Build it once
/// and share it (`ConnectionConfig::tls`).
///
/// # Errors
/// As [`client_config_with_roots`].
pub fn webpki_client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let roots: RootCertStore = webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
    client_config_with_roots(roots)
}
