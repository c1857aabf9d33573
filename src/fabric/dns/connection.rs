//! `Link`: the one TCP connection to a DNS server (for one TSIG key) that every call of a
//! run shares. It is opened at the first call and kept open; calls made at the same time
//! are pipelined on it (RFC 7766 §6.2.1.1), each answer matched to its message by id and
//! verified against that message's own TSIG signature.
//!
//! Why one: a run updates and verifies the names of many VMs at once (`--parallel 30`,
//! 90 VMs: 180 exchanges), and a connection per exchange overflows BIND's TCP listen
//! queue (10 deep), which stalls connects for a second or more. One connection has no
//! such limit, and costs one handshake per run instead of one per record.
//!
//! Why `QuickAck`: BIND leaves Nagle's algorithm on, so when two answers are ready at once
//! it sends the second only once the first is acknowledged; Linux delays that
//! acknowledgement up to 40 ms while the client has nothing to send. Pipelined calls
//! then wait 40 ms for the last answers of each burst (the 90-VM job took 240 ms at
//! `--parallel 8` instead of 65). The connection asks the kernel to acknowledge at once
//! (TCP_QUICKACK) after every read.
//!
//! A server closes idle connections (BIND after 30 s): the next call sees that the
//! connection has ended and opens another. If it ends while a message is on its way,
//! the message is sent again on a new connection only when sending it twice does no harm
//! (`Resend::Idempotent`: queries, and updates without a prerequisite on the old data);
//! otherwise the call fails and says the server closed the connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_net::tcp::{TcpClientStream, TcpStream};
use hickory_net::xfer::{DnsExchange, DnsHandle, DnsMultiplexer};
use hickory_net::{BufDnsStreamHandle, NetError};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Message};
use hickory_proto::rr::TSigner;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Mutex, Semaphore};

/// At most this many messages wait for their answers on one connection; calls past it
/// wait their turn here.
const IN_FLIGHT: usize = 32;

/// hickory's own limit on a connection's messages, past which a send fails as "busy". It
/// forgets an answered message only at its next turn, after the caller may already have
/// sent the next one: well above `IN_FLIGHT`, so that "busy" means the connection's task
/// has ended.
const HICKORY_IN_FLIGHT: usize = IN_FLIGHT * 8;

/// Whether a message may be sent again after its connection closed under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resend {
    /// Sending it twice leaves the zone as sending it once: a query, or an update that
    /// replaces a record set without a prerequisite on what it held.
    Idempotent,
    /// A second copy could fail its own prerequisite (the first one applied): never.
    Never,
}

/// The connection to one server, as signed with one key; shared by every zone configured
/// with both.
pub(super) struct Link {
    address: SocketAddr,
    /// Bounds connecting, and each message's wait for its answer.
    timeout: Duration,
    signer: Option<TSigner>,
    open: Mutex<Option<Open>>,
    in_flight: Semaphore,
    /// How many connections this link has opened: one per run, unless the server closed one.
    opened: AtomicU64,
}

/// A live connection: the handle that sends on it, and the task that drives it (it
/// finishes when the connection closes).
struct Open {
    exchange: DnsExchange<TokioRuntimeProvider>,
    driver: AbortOnDrop,
    /// Which of the link's connections this is, so that a call that saw it fail does not
    /// drop a newer one another call has opened since.
    number: u64,
}

impl Link {
    pub(super) fn new(address: SocketAddr, timeout: Duration, signer: Option<TSigner>) -> Self {
        Link {
            address,
            timeout,
            signer,
            open: Mutex::new(None),
            in_flight: Semaphore::new(IN_FLIGHT),
            opened: AtomicU64::new(0),
        }
    }

    /// How many TCP connections this link has opened so far.
    pub(super) fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Sends `message` on the link's connection (opening it if needed) and returns the
    /// answer, verified with the key when the message was signed.
    pub(super) async fn exchange(&self, message: Message, resend: Resend) -> Result<DnsResponse, NetError> {
        let _turn = self.in_flight.acquire().await.map_err(|_| NetError::Busy)?;
        let (exchange, number, reused) = self.connection().await?;
        match send(&exchange, message.clone()).await {
            Err(error) if closed(&error) => {
                self.forget(number).await;
                if !(reused && resend == Resend::Idempotent) {
                    return Err(error);
                }
                // The server closed a connection we had kept (idle, or restarted) as we
                // sent: nothing was answered, and sending again is harmless.
                let (exchange, number, _) = self.connection().await?;
                let again = send(&exchange, message).await;
                if again.as_ref().is_err_and(closed) {
                    self.forget(number).await;
                }
                again
            }
            other => other,
        }
    }

    /// The live connection, opened now if there is none; and whether it was already open.
    async fn connection(&self) -> Result<(DnsExchange<TokioRuntimeProvider>, u64, bool), NetError> {
        let mut open = self.open.lock().await;
        if let Some(live) = open.as_ref().filter(|live| !live.driver.0.is_finished()) {
            return Ok((live.exchange.clone(), live.number, true));
        }
        let io_error = |e: io::Error| NetError::Io(Arc::new(e));
        let socket = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(self.address))
            .await
            .map_err(|_| io_error(io::ErrorKind::TimedOut.into()))?
            .map_err(io_error)?;
        socket.set_nodelay(true).map_err(io_error)?;
        let (handle, outbound) = BufDnsStreamHandle::new(self.address);
        let stream = TcpStream::from_stream_with_receiver(AsyncIoTokioAsStd(QuickAck(socket)), self.address, outbound);
        let mut multiplexer = DnsMultiplexer::new(TcpClientStream::from_stream(stream), handle)
            .with_timeout(self.timeout)
            .with_max_active_requests(HICKORY_IN_FLIGHT);
        if let Some(signer) = &self.signer {
            multiplexer = multiplexer.with_signer(signer.clone());
        }
        let (exchange, driver) = DnsExchange::<TokioRuntimeProvider>::from_stream(multiplexer);
        let number = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        *open = Some(Open { exchange: exchange.clone(), driver: AbortOnDrop(tokio::spawn(driver)), number });
        Ok((exchange, number, false))
    }

    /// Drops connection `number` if it is still the live one: the next call opens another.
    async fn forget(&self, number: u64) {
        let mut open = self.open.lock().await;
        if open.as_ref().is_some_and(|live| live.number == number) {
            *open = None;
        }
    }
}

async fn send(exchange: &DnsExchange<TokioRuntimeProvider>, message: Message) -> Result<DnsResponse, NetError> {
    let mut options = DnsRequestOptions::default();
    options.use_edns = false;
    options.recursion_desired = false;
    let mut answers = exchange.send(DnsRequest::new(message, options));
    // No answer at all: the connection's task dropped the message as it ended.
    let ended = || NetError::Io(Arc::new(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection ended")));
    answers.next().await.unwrap_or_else(|| Err(ended()))
}

/// Whether the connection ended before the message was answered: it is of no more use.
/// (Dropping it aborts its task, which would fail every other message on it: only an
/// error that says the connection is gone may lead there.)
fn closed(error: &NetError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, NotConnected, UnexpectedEof};
    match error {
        // The connection's task has ended: hickory's handle says "busy" (see
        // HICKORY_IN_FLIGHT), or the message was dropped on its way.
        NetError::Busy => true,
        NetError::Message(text) => text.contains("receiver was canceled"),
        NetError::Io(io) => {
            matches!(io.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected)
        }
        NetError::Msg(text) => text.contains("SendError"),
        _ => false,
    }
}

/// Ends the connection's task (and closes the connection) when the link goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A TCP socket that acknowledges what it reads at once (TCP_QUICKACK, Linux), so that a
/// server using Nagle's algorithm sends its next answer without waiting for our delayed
/// acknowledgement. The kernel leaves quick-ack mode on its own: it is asked again after
/// every read.
struct QuickAck(tokio::net::TcpStream);

impl QuickAck {
    fn acknowledge_now(&self) {
        // Only a latency hint: if the kernel refuses it, answers come 40 ms later at worst.
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.0).poll_read(cx, buf);
        if read.is_ready() {
            self.acknowledge_now();
        }
        read
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
