//! [`Stream`]: the byte stream under one WebSocket, plain TCP or TLS, always non-blocking.
//! Owned by its connection on the event-loop thread.
//!
//! [`TlsStream`] is written for non-blocking sockets instead of using `rustls::StreamOwned`,
//! whose `write` swallows socket errors and whose `read` interleaves handshake completion.
//! Here every call does the least possible work and reports `WouldBlock` faithfully:
//! - `read` hands out buffered plaintext first, then reads TLS records until plaintext appears
//!   or the socket would block (draining to `WouldBlock` is what mio's edge-triggered
//!   readiness requires);
//! - `write` buffers plaintext in rustls (bounded by rustls' buffer limit) and pushes as much
//!   ciphertext as the socket takes; what is left goes out on `flush` or the next `write`;
//! - `flush` returns `WouldBlock` until every byte of ciphertext is in the kernel.
//!
//! TLS errors travel as `io::ErrorKind::InvalidData` wrapping the `rustls::Error` (rustls'
//! own convention); `ConnectionError::from_io` unwraps them.

use std::io::{self, Read, Write};

use mio::net::TcpStream;
use rustls::ClientConnection;

/// A non-blocking TLS client stream over a mio TCP socket.
#[derive(Debug)]
pub(crate) struct TlsStream {
    tls: ClientConnection,
    sock: TcpStream,
}

fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl TlsStream {
    pub(crate) fn new(tls: ClientConnection, sock: TcpStream) -> TlsStream {
        TlsStream { tls, sock }
    }

    pub(crate) fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// Drives the TLS handshake as far as the socket allows.
    ///
    /// # Errors
    /// `WouldBlock` while the handshake waits for the socket; any other error is fatal.
    pub(crate) fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.write_tls()?;
            if !self.tls.is_handshaking() {
                return Ok(());
            }
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Decrypts what `read_tls` buffered. On a TLS error rustls queues an alert: try to send it
    /// so the server learns why, then report the error.
    fn process(&mut self) -> io::Result<()> {
        match self.tls.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.write_tls();
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    /// Pushes buffered ciphertext into the socket; `WouldBlock` if some is left.
    fn write_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Like `write_tls`, but a full socket is not an error: the rest goes out later.
    fn write_tls_opportunistic(&mut self) -> io::Result<bool> {
        match self.write_tls() {
            Ok(()) => Ok(true),
            Err(e) if is_would_block(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                // Ok(0) after the peer's close_notify: end of stream.
                Ok(n) => return Ok(n),
                // No plaintext buffered: fetch more records below.
                Err(e) if is_would_block(&e) => {}
                // UnexpectedEof: TCP closed without close_notify.
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.sock) {
                // End of stream is recorded by rustls; the next `reader().read` reports it.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.process()?;
            // Key updates and alerts may need an answer.
            self.write_tls_opportunistic()?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut accepted = self.tls.writer().write(buf)?;
        let drained = self.write_tls_opportunistic()?;
        if accepted == 0 && drained {
            // rustls' send buffer was full and is now empty: it takes the data this time.
            accepted = self.tls.writer().write(buf)?;
            self.write_tls_opportunistic()?;
        }
        if accepted == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(accepted)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_tls()
    }
}

/// The stream under a WebSocket.
#[derive(Debug)]
pub(crate) enum Stream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`. Boxed: a rustls connection is large and most of it is cold.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The socket, for (de)registration with mio.
    pub(crate) fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(sock) => sock,
            Stream::Tls(tls) => tls.tcp_mut(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(sock) => sock.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(sock) => sock.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(sock) => sock.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}
