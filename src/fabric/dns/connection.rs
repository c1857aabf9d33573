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
//! A server closes idle connections (BIND after 30 s): the next call sees that the
//! connection has ended and opens another. If it ends while a message is on its way,
//! the message is sent again on a new connection only when sending it twice does no harm
//! (`Resend::Idempotent`: queries, and updates without a prerequisite on the old data);
//! otherwise the call fails and says the server closed the connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::NetError;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::{DnsExchange, DnsHandle, DnsMultiplexer};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Message};
use hickory_proto::rr::TSigner;
use tokio::sync::{Mutex, Semaphore};

/// At most this many messages wait for their answers on one connection: hickory's own
/// limit (beyond it a send fails with "busy"), so calls past it wait their turn here.
const IN_FLIGHT: usize = 32;

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
        let provider = TokioRuntimeProvider::new();
        let (connect, handle) = TcpClientStream::new(self.address, None, Some(self.timeout), provider);
        let mut multiplexer =
            DnsMultiplexer::new(connect.await?, handle).with_timeout(self.timeout).with_max_active_requests(IN_FLIGHT);
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
    answers.next().await.unwrap_or(Err(NetError::Timeout))
}

/// Whether the connection ended before the message was answered: it is of no more use.
fn closed(error: &NetError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, NotConnected, UnexpectedEof};
    match error {
        // hickory's handle says "busy" when the connection's task has ended.
        NetError::Busy => true,
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
