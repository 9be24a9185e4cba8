//! The engine task and its typed handle. One task owns the runs of this
//! process: it takes `Command`s over a channel, runs each promotion or
//! rollback on a blocking thread of the runtime (gates, SQLite and
//! unpacking are synchronous work), and every request's progress comes
//! back as `EngineEvent`s on one stream. The command line and the
//! workbench drive promotions, rollbacks and approvals only through
//! `EngineHandle`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::EngineError;
use super::approve::{ApproveRequest, Approved, approve};
use super::event::{EngineEvent, EventKind, Sink, Ticket};
use super::flags::{FlagsOutcome, FlagsRequest, set_flags};
use super::pin::{UnpinOutcome, UnpinRequest, unpin};
use super::promote::{PromoteOutcome, PromoteRequest, promote};
use super::rollback::{RollbackOutcome, RollbackRequest, rollback};
use super::runs::Runs;
use crate::config::Config;
use crate::workspace::Workspace;

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// Requests to the engine.
enum Command {
    Promote(Ticket, Box<PromoteRequest>, Reply<PromoteOutcome>),
    Rollback(Ticket, Box<RollbackRequest>, Reply<RollbackOutcome>),
    Approve(Ticket, Box<ApproveRequest>, Reply<Approved>),
    Unpin(Ticket, Box<UnpinRequest>, Reply<UnpinOutcome>),
    SetFlags(Ticket, Box<FlagsRequest>, Reply<FlagsOutcome>),
    Pause(i64, Reply<()>),
    Resume(i64, Reply<()>),
    Abort(i64, Reply<()>),
    Shutdown(oneshot::Sender<()>),
}

/// A cheap, cloneable way to talk to the engine task.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Command>,
    next: Arc<AtomicU64>,
}

/// The answer to a request, with the ticket its events carry.
pub struct Pending<T> {
    pub ticket: Ticket,
    rx: oneshot::Receiver<Result<T, EngineError>>,
}

impl<T> Pending<T> {
    pub async fn wait(self) -> Result<T, EngineError> {
        self.rx
            .await
            .unwrap_or_else(|_| Err(EngineError::error("the engine stopped before answering")))
    }
}

impl EngineHandle {
    fn ticket(&self) -> Ticket {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn ask<T>(&self, make: impl FnOnce(Ticket, Reply<T>) -> Command) -> Pending<T> {
        let ticket = self.ticket();
        let (reply, rx) = oneshot::channel();
        // If the engine is gone the request drops with its reply, and
        // `wait` says the engine stopped.
        let _ = self.tx.send(make(ticket, reply));
        Pending { ticket, rx }
    }

    pub fn promote(&self, req: PromoteRequest) -> Pending<PromoteOutcome> {
        self.ask(|t, r| Command::Promote(t, Box::new(req), r))
    }

    pub fn rollback(&self, req: RollbackRequest) -> Pending<RollbackOutcome> {
        self.ask(|t, r| Command::Rollback(t, Box::new(req), r))
    }

    /// Signs an approval bound to one app, digest and environment.
    pub fn approve(&self, req: ApproveRequest) -> Pending<Approved> {
        self.ask(|t, r| Command::Approve(t, Box::new(req), r))
    }

    /// Lifts the pin a rollback put on an app in an environment, sealed.
    pub fn unpin(&self, req: UnpinRequest) -> Pending<UnpinOutcome> {
        self.ask(|t, r| Command::Unpin(t, Box::new(req), r))
    }

    /// Changes an environment's feature flags: under its lock, sealed,
    /// then delivered to its routed targets.
    pub fn set_flags(&self, req: FlagsRequest) -> Pending<FlagsOutcome> {
        self.ask(|t, r| Command::SetFlags(t, Box::new(req), r))
    }

    /// Holds a running promotion's next steps; running ones finish.
    pub fn pause(&self, promotion_id: i64) -> Pending<()> {
        self.ask(|_, r| Command::Pause(promotion_id, r))
    }

    pub fn resume(&self, promotion_id: i64) -> Pending<()> {
        self.ask(|_, r| Command::Resume(promotion_id, r))
    }

    /// Stops a running promotion: its steps are killed, the previous
    /// release is put back, and the abort is sealed.
    pub fn abort(&self, promotion_id: i64) -> Pending<()> {
        self.ask(|_, r| Command::Abort(promotion_id, r))
    }

    /// Aborts what runs, waits for each to seal, and stops the task.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Starts the engine task on the current tokio runtime. Events of every
/// request go to the returned stream.
pub fn spawn(
    ws: Workspace,
    config: Config,
) -> (EngineHandle, mpsc::UnboundedReceiver<EngineEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (events, stream) = mpsc::unbounded_channel();
    tokio::spawn(engine_task(ws, config, rx, events));
    (
        EngineHandle {
            tx,
            next: Arc::new(AtomicU64::new(1)),
        },
        stream,
    )
}

async fn engine_task(
    ws: Workspace,
    config: Config,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<EngineEvent>,
) {
    let runs = Runs::default();
    let mut work = tokio::task::JoinSet::new();
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::Promote(ticket, req, reply) => {
                let (ws, config, runs) = (ws.clone(), config.clone(), runs.clone());
                let sink = Sink::new(ticket, events.clone());
                work.spawn_blocking(move || {
                    let r = promote(&ws, &config, &req, &runs, &sink);
                    report_failure(&sink, &r);
                    let _ = reply.send(r);
                });
            }
            Command::Rollback(ticket, req, reply) => {
                let (ws, config) = (ws.clone(), config.clone());
                let sink = Sink::new(ticket, events.clone());
                work.spawn_blocking(move || {
                    let r = rollback(&ws, &config, &req, &sink);
                    report_failure(&sink, &r);
                    let _ = reply.send(r);
                });
            }
            Command::Unpin(ticket, req, reply) => {
                let (ws, config) = (ws.clone(), config.clone());
                let sink = Sink::new(ticket, events.clone());
                work.spawn_blocking(move || {
                    let r = unpin(&ws, &config, &req, &sink);
                    report_failure(&sink, &r);
                    let _ = reply.send(r);
                });
            }
            Command::SetFlags(ticket, req, reply) => {
                let (ws, config) = (ws.clone(), config.clone());
                let sink = Sink::new(ticket, events.clone());
                work.spawn_blocking(move || {
                    let r = set_flags(&ws, &config, &req, &sink);
                    report_failure(&sink, &r);
                    let _ = reply.send(r);
                });
            }
            Command::Approve(ticket, req, reply) => {
                let ws = ws.clone();
                let sink = Sink::new(ticket, events.clone());
                work.spawn_blocking(move || {
                    let r = approve(&ws, &req);
                    match &r {
                        Ok(a) => sink.emit(EventKind::Approved {
                            signer: a.signer.clone(),
                            approval: a.evidence.digest.clone(),
                        }),
                        Err(e) => sink.emit(EventKind::Failed { error: e.clone() }),
                    }
                    let _ = reply.send(r);
                });
            }
            Command::Pause(id, reply) => {
                let r = control(&ws, &runs, id, Change::Pause);
                if r.is_ok() {
                    let _ = events.send(EngineEvent {
                        ticket: 0,
                        kind: EventKind::Paused { promotion_id: id },
                    });
                }
                let _ = reply.send(r);
            }
            Command::Resume(id, reply) => {
                let r = control(&ws, &runs, id, Change::Resume);
                if r.is_ok() {
                    let _ = events.send(EngineEvent {
                        ticket: 0,
                        kind: EventKind::Resumed { promotion_id: id },
                    });
                }
                let _ = reply.send(r);
            }
            Command::Abort(id, reply) => {
                let r = control(&ws, &runs, id, Change::Abort);
                if r.is_ok() {
                    let _ = events.send(EngineEvent {
                        ticket: 0,
                        kind: EventKind::Aborting { promotion_id: id },
                    });
                }
                let _ = reply.send(r);
            }
            Command::Shutdown(done) => {
                // Promotions still deciding start their runs cancelled.
                runs.close();
                while work.join_next().await.is_some() {}
                let _ = done.send(());
                return;
            }
        }
        // Reap finished work without waiting for it.
        while work.try_join_next().is_some() {}
    }
}

fn report_failure<T>(sink: &Sink, r: &Result<T, EngineError>) {
    if let Err(e) = r {
        sink.emit(EventKind::Failed { error: e.clone() });
    }
}

enum Change {
    Pause,
    Resume,
    Abort,
}

/// Applies an operator's change to a run of this process; a pause is
/// written to the store before it is reported.
fn control(ws: &Workspace, runs: &Runs, id: i64, change: Change) -> Result<(), EngineError> {
    let Some(c) = runs.get(id) else {
        return Err(
            EngineError::usage(format!("promotion #{id} is not running in this process")).hint(
                "`stella promotion list` shows what runs; only the process running it can steer it",
            ),
        );
    };
    match change {
        Change::Pause => {
            ws.open_store()?.set_run_paused(id, true)?;
            c.pause();
        }
        Change::Resume => {
            ws.open_store()?.set_run_paused(id, false)?;
            c.resume();
        }
        Change::Abort => c.cancel(),
    }
    Ok(())
}
