//! A small blocking WebSocket server for the connection tests: std `TcpListener` on
//! `127.0.0.1:0`, one thread, a fixed number of accepted connections, optional TLS (rustls
//! with a self-signed certificate from rcgen). Each accepted socket goes to a handler closure
//! that scripts the server side of one test. Sockets have a 5 s read timeout so a server
//! thread always ends by itself.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig, ServerConnection, StreamOwned,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};
use tungstenite::{Message, WebSocket};

/// Anything the server can speak WebSocket over.
pub(crate) trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

/// The server side of one accepted connection.
pub(crate) type ServerStream = Box<dyn Io>;

/// One accepted connection, before the WebSocket upgrade.
pub(crate) struct Accepted {
    /// 0 for the first accepted connection, 1 for the second, ...
    pub(crate) index: usize,
    /// The TLS server name the client sent (TLS only).
    pub(crate) sni: Option<String>,
    pub(crate) stream: ServerStream,
}

/// Starts a server that accepts `connections` connections and hands each to `handler`, in
/// order, on one thread. With `tls`, the TLS handshake is done before the handler runs.
pub(crate) fn spawn_raw<F>(
    tls: Option<Arc<ServerConfig>>,
    connections: usize,
    mut handler: F,
) -> (SocketAddr, JoinHandle<()>)
where
    F: FnMut(Accepted) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        for index in 0..connections {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            tcp.set_nodelay(true).unwrap();
            let accepted = match &tls {
                None => Accepted {
                    index,
                    sni: None,
                    stream: Box::new(tcp),
                },
                Some(config) => {
                    let mut tcp = tcp;
                    let mut conn = ServerConnection::new(Arc::clone(config)).unwrap();
                    let mut failed = false;
                    while conn.is_handshaking() {
                        if conn.complete_io(&mut tcp).is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        // The client refused us (certificate test): nothing more to do.
                        continue;
                    }
                    Accepted {
                        index,
                        sni: conn.server_name().map(str::to_owned),
                        stream: Box::new(StreamOwned::new(conn, tcp)),
                    }
                }
            };
            handler(accepted);
        }
    });
    (addr, handle)
}

/// [`spawn_raw`] plus the WebSocket upgrade: the handler gets an open server WebSocket.
pub(crate) fn spawn<F>(
    tls: Option<Arc<ServerConfig>>,
    connections: usize,
    mut handler: F,
) -> (SocketAddr, JoinHandle<()>)
where
    F: FnMut(usize, WebSocket<ServerStream>) + Send + 'static,
{
    spawn_raw(tls, connections, move |accepted| {
        if let Ok(ws) = tungstenite::accept(accepted.stream) {
            handler(accepted.index, ws);
        }
    })
}

/// Reads and discards until the client goes away (or the read timeout hits). Returns the
/// text messages seen.
pub(crate) fn read_until_closed(ws: &mut WebSocket<ServerStream>) -> Vec<String> {
    let mut texts = Vec::new();
    while let Ok(message) = ws.read() {
        match message {
            Message::Text(t) => texts.push(t.as_str().to_owned()),
            Message::Close(_) => texts.push("<close>".to_owned()),
            _ => {}
        }
    }
    texts
}

/// Reads until the next text message.
pub(crate) fn read_text(ws: &mut WebSocket<ServerStream>) -> String {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Close(_) => panic!("client closed while a text was expected"),
            _ => {}
        }
    }
}

/// An unmasked server text frame, encoded by hand so tests control TCP segmentation.
pub(crate) fn text_frame(payload: &str) -> Vec<u8> {
    let n = payload.len();
    let mut out = vec![0x81];
    if n < 126 {
        out.push(u8::try_from(n).unwrap());
    } else if let Ok(n16) = u16::try_from(n) {
        out.push(126);
        out.extend(n16.to_be_bytes());
    } else {
        out.push(127);
        out.extend((n as u64).to_be_bytes());
    }
    out.extend(payload.as_bytes());
    out
}

/// A self-signed certificate for `localhost`: the server config serving it and a root store
/// that trusts it.
pub(crate) fn self_signed_localhost() -> (Arc<ServerConfig>, RootCertStore) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    (Arc::new(server), roots)
}
