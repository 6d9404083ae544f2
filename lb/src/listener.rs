//! Accepting connections: accept loops, I/O loops, connection limit, drain on shutdown.
//!
//! The I/O loops are tasks on the caller's runtime or dedicated single-threaded runtimes;
//! each entry's accept loop hands each connection to the one serving the fewest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

use crate::error::{ErrorKind, ProxyError};
use crate::io::StopSignal;
use crate::policy::Entry;
use crate::proxy::{self, Shared};
use crate::trim::{TRIM_CHECK, Trimmer};
use crate::upstream::Parked;

/// Idle backend connections kept per backend after their client connection closed.
const MAX_PARKED_PER_BACKEND: usize = 256;
/// Connections over the limit that are being answered at once; past this, more are closed
/// without an answer, so a flood can't make the answering itself a cost.
const MAX_TURNING_AWAY: usize = 64;
/// How long a connection over the limit is kept to deliver its answer.
const TURN_AWAY_LINGER: Duration = Duration::from_secs(1);

/// Where a loop runs: a task on the caller's runtime, or a dedicated thread that says when
/// it is done.
pub(crate) enum Loop {
    Task(JoinHandle<()>),
    Thread(oneshot::Receiver<()>),
}

impl Loop {
    /// Waits until the loop has finished.
    pub(crate) async fn join(self) {
        match self {
            Loop::Task(task) => {
                let _ = task.await;
            }
            Loop::Thread(done) => {
                let _ = done.await;
            }
        }
    }
}

/// A connection handed to an I/O loop.
type Accepted = (std::net::TcpStream, SocketAddr, Entry);

/// A connection loop as the accept loop sees it: where to send connections, and how many
/// it is serving.
#[derive(Clone)]
struct IoTarget {
    tx: mpsc::UnboundedSender<Accepted>,
    load: Arc<AtomicUsize>,
}

/// Starts the I/O loops (`io_threads` dedicated threads, or one task on the caller's
/// runtime for 0) and an accept loop per entry feeding them all. The accept loops come
/// first in the returned list. Everything stops, draining, when `shutdown` says so.
pub(crate) fn start(
    listeners: Vec<(TcpListener, Entry)>,
    shared: Arc<Shared>,
    io_threads: usize,
    max_connections: usize,
    shutdown: watch::Receiver<Option<Duration>>,
) -> std::io::Result<Vec<Loop>> {
    let mut loops = Vec::new();
    let mut targets = Vec::new();
    if io_threads == 0 {
        let (tx, rx) = mpsc::unbounded_channel();
        let load = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(io_loop(rx, shared.clone(), load.clone(), shutdown.clone()));
        loops.push(Loop::Task(task));
        targets.push(IoTarget { tx, load });
    }
    for i in 0..io_threads {
        let (tx, rx) = mpsc::unbounded_channel();
        let load = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = oneshot::channel();
        let (shared, load2, shutdown) = (shared.clone(), load.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name(format!("lb-io-{i}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(rt) => rt.block_on(io_loop(rx, shared, load2, shutdown)),
                    Err(err) => warn!(error = %err, "cannot start a load balancer thread"),
                }
                let _ = done_tx.send(());
            })?;
        loops.push(Loop::Thread(done_rx));
        targets.push(IoTarget { tx, load });
    }
    let accept = listeners.into_iter().map(|(listener, entry)| {
        let (targets, shutdown) = (targets.clone(), shutdown.clone());
        Loop::Task(tokio::spawn(accept_loop(
            listener,
            entry,
            targets,
            max_connections,
            shutdown,
        )))
    });
    Ok(accept.chain(loops).collect())
}

/// Accepts connections and hands each to the connection loop serving the fewest, as
/// HAProxy spreads connections over its threads. (`SO_REUSEPORT` listeners spread them by a
/// hash instead, which leaves one thread noticeably busier and shows in tail latency.)
/// `max_connections` counts the connections of every entry.
async fn accept_loop(
    listener: TcpListener,
    entry: Entry,
    mut targets: Vec<IoTarget>,
    max_connections: usize,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    let mut turning_away = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            // A drain was asked for, or every handle is gone: stop accepting either way.
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let open: usize = targets.iter().map(|t| t.load.load(Ordering::Relaxed)).sum();
                    if open >= max_connections {
                        while turning_away.try_join_next().is_some() {}
                        debug!(%peer, kind = ?ErrorKind::TooManyConnections, reason = "connection limit reached", "request refused");
                        if turning_away.len() < MAX_TURNING_AWAY {
                            turning_away.spawn(turn_away(stream));
                        }
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let Ok(mut stream) = stream.into_std() else {
                        warn!("cannot hand over a connection");
                        continue;
                    };
                    // A loop whose thread died is forgotten, and the next one gets the connection.
                    while let Some(i) = (0..targets.len())
                        .min_by_key(|&i| targets[i].load.load(Ordering::Relaxed))
                    {
                        targets[i].load.fetch_add(1, Ordering::Relaxed);
                        match targets[i].tx.send((stream, peer, entry)) {
                            Ok(()) => break,
                            Err(mpsc::error::SendError((back, _, _))) => {
                                warn!("a load balancer I/O thread is gone");
                                stream = back;
                                targets.swap_remove(i);
                            }
                        }
                    }
                    if targets.is_empty() {
                        warn!("no load balancer I/O thread left; no longer accepting");
                        break;
                    }
                }
                Err(e) => {
                    // Usually fd exhaustion; back off instead of spinning on the error.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Answers a connection over the limit with a 503 and closes it, reading away what the
/// client sends meanwhile so the kernel doesn't reset the answer before it is read.
async fn turn_away(mut stream: TcpStream) {
    let mut answer = Vec::new();
    ProxyError::new(ErrorKind::TooManyConnections, "connection limit reached").write_response(
        &mut answer,
        true,
        false,
    );
    let _ = tokio::time::timeout(TURN_AWAY_LINGER, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Serves the connections the accept loop hands over until shutdown, then drains them for
/// the grace period.
async fn io_loop(
    mut incoming: mpsc::UnboundedReceiver<Accepted>,
    shared: Arc<Shared>,
    load: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    let parked = Arc::new(Parked::new(
        // Sized for every slot: backends added at runtime park here too.
        crate::config::MAX_BACKENDS,
        MAX_PARKED_PER_BACKEND,
    ));
    let mut conns = JoinSet::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut trimmer = Trimmer::new();
    let mut trim_check = tokio::time::interval(TRIM_CHECK);
    trim_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let grace = loop {
        tokio::select! {
            biased;
            changed = shutdown.changed() => match changed {
                Ok(()) => break shutdown.borrow().unwrap_or_default(),
                // Every handle is gone: nobody can ask for a drain any more.
                Err(_) => break Duration::ZERO,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {
                load.fetch_sub(1, Ordering::Relaxed);
            }
            _ = trim_check.tick() => {
                trimmer.observe(conns.len());
            }
            next = incoming.recv() => match next {
                Some((stream, peer, entry)) => match TcpStream::from_std(stream) {
                    Ok(stream) => {
                        let mut stop = stop_rx.clone();
                        let stop: StopSignal = Box::pin(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        });
                        conns.spawn(proxy::serve(
                            stream,
                            peer,
                            entry,
                            shared.clone(),
                            parked.clone(),
                            stop,
                        ));
                        // A wave that comes and goes between two checks counts too.
                        trimmer.observe(conns.len());
                    }
                    Err(e) => {
                        load.fetch_sub(1, Ordering::Relaxed);
                        warn!(error = %e, "cannot take over a connection");
                    }
                },
                // The accept loops stopped, which they do on shutdown; take the grace from it.
                None => break match shutdown.wait_for(Option::is_some).await {
                    Ok(grace) => grace.unwrap_or_default(),
                    Err(_) => Duration::ZERO,
                },
            },
        }
    };
    shared.stopping.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    // Connections accepted but not yet taken over are closed now, not left waiting.
    incoming.close();
    while incoming.try_recv().is_ok() {
        load.fetch_sub(1, Ordering::Relaxed);
    }
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            open = conns.len(),
            "grace period over; closing remaining connections"
        );
        conns.shutdown().await;
    }
}
