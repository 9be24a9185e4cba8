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
use super::record::{
    AppReleaseRequest, AttachRequest, Attached, KeyAdded, KeyRequest, MarkLiveRequest, add_key,
    attach_evidence, ensure_sealing_key, mark_live,
};
use super::resolve::{AppRelease, app_release_with, resolve_and_record};
use super::rollback::{RollbackOutcome, RollbackRequest, rollback};
use super::rollout::{Ack, ConsolidateRequest, RolloutRequest};
use super::runs::Runs;
use super::steer::{SteerRequest, Steered, steer};
use crate::config::Config;
use crate::domain::{OperatorRequest, ReleaseSpec, Resolution};
use crate::workspace::Workspace;

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// Requests to the engine.
enum Command {
    Promote(Ticket, Box<PromoteRequest>, Reply<PromoteOutcome>),
    Rollback(Ticket, Box<RollbackRequest>, Reply<RollbackOutcome>),
    Approve(Ticket, Box<ApproveRequest>, Reply<Approved>),
    Unpin(Ticket, Box<UnpinRequest>, Reply<UnpinOutcome>),
    Rollout(Ticket, Box<RolloutRequest>, Reply<Ack>),
    Consolidate(Ticket, Box<ConsolidateRequest>, Reply<Vec<String>>),
    SetFlags(Ticket, Box<FlagsRequest>, Reply<FlagsOutcome>),
    Pause(i64, Reply<()>),
    Resume(i64, Reply<()>),
    Abort(i64, Reply<()>),
    Shutdown(oneshot::Sender<()>),
    // Added with the request rows and recovery as commands:
    Steer(Ticket, Box<SteerRequest>, Reply<Steered>),
    Recover(Ticket, Reply<Vec<String>>),
    RouterServe(String, Reply<super::router::Stopped>),
    RouterStart(String, Reply<std::net::SocketAddr>),
    RouterStop(String, Reply<Option<i64>>),
    MarkLive(Box<MarkLiveRequest>, Reply<()>),
    Attach(Box<AttachRequest>, Reply<Attached>),
    AddKey(Box<KeyRequest>, Reply<KeyAdded>),
    SealingKey(Reply<String>),
    PushCapsules(
        Ticket,
        super::publish::PushWhich,
        Reply<Vec<super::publish::Pushed>>,
    ),
    Resolve(Box<ReleaseSpec>, Reply<(Resolution, Vec<String>)>),
    AppRelease(Box<AppReleaseRequest>, Reply<(AppRelease, Vec<String>)>),
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

    /// An operator's pause, resume, promote-now or abort of the rollout
    /// in an environment, whichever process runs it; answered once sealed.
    pub fn rollout(&self, req: RolloutRequest) -> Pending<Ack> {
        self.ask(|t, r| Command::Rollout(t, Box::new(req), r))
    }

    /// Ends an environment's A/B test on its winner, sealed first.
    pub fn consolidate(&self, req: ConsolidateRequest) -> Pending<Vec<String>> {
        self.ask(|t, r| Command::Consolidate(t, Box::new(req), r))
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

    /// Pauses, resumes or aborts a promotion's run wherever it runs: this
    /// process's runs directly, another process's through a request row
    /// its owner answers within a second; a dead owner's run is taken
    /// over for an abort (sealed), refused for a pause or resume.
    pub fn steer(&self, req: SteerRequest) -> Pending<Steered> {
        self.ask(|t, r| Command::Steer(t, Box::new(req), r))
    }

    /// Recovers what dead processes left, each under its environment's
    /// lock: their promotions `interrupted`, targets back to what is live.
    pub fn recover(&self) -> Pending<Vec<String>> {
        self.ask(Command::Recover)
    }

    /// Runs a routed target's controller until it is stopped (SIGTERM,
    /// SIGINT) or its workspace is gone.
    pub fn router_serve(&self, target: &str) -> Pending<super::router::Stopped> {
        let target = target.to_owned();
        self.ask(|_, r| Command::RouterServe(target, r))
    }

    /// Starts a routed target's controller in the background unless it
    /// runs; answers where it listens.
    pub fn router_start(&self, target: &str) -> Pending<std::net::SocketAddr> {
        let target = target.to_owned();
        self.ask(|_, r| Command::RouterStart(target, r))
    }

    /// Stops a routed target's controller, and with it its nginx and
    /// release processes; answers its pid (`None`: none ran).
    pub fn router_stop(&self, target: &str) -> Pending<Option<i64>> {
        let target = target.to_owned();
        self.ask(|_, r| Command::RouterStop(target, r))
    }

    /// Records a release as live in an environment by hand.
    pub fn mark_release_live(&self, req: MarkLiveRequest) -> Pending<()> {
        self.ask(|_, r| Command::MarkLive(Box::new(req), r))
    }

    /// Attaches a piece of evidence to a release.
    pub fn attach(&self, req: AttachRequest) -> Pending<Attached> {
        self.ask(|_, r| Command::Attach(Box::new(req), r))
    }

    /// Generates or imports a key.
    pub fn new_key(&self, req: KeyRequest) -> Pending<KeyAdded> {
        self.ask(|_, r| Command::AddKey(Box::new(req), r))
    }

    /// Resolves a release spec and records the resolution (with notes: a
    /// moved tag).
    pub fn resolve(&self, spec: ReleaseSpec) -> Pending<(Resolution, Vec<String>)> {
        self.ask(|_, r| Command::Resolve(Box::new(spec), r))
    }

    /// The release a deciding command is about, recorded when asked.
    pub fn app_release(&self, req: AppReleaseRequest) -> Pending<(AppRelease, Vec<String>)> {
        self.ask(|_, r| Command::AppRelease(Box::new(req), r))
    }

    /// Attaches capsules and their verification summaries to the image:
    /// one capsule (again), or every pending one. Each is reported as an
    /// event; a refused push stays pending.
    pub fn push_capsules(
        &self,
        which: super::publish::PushWhich,
    ) -> Pending<Vec<super::publish::Pushed>> {
        self.ask(|t, r| Command::PushCapsules(t, which, r))
    }

    /// The workspace's sealing key, made if missing; its key id.
    pub fn sealing_key(&self) -> Pending<String> {
        self.ask(|_, r| Command::SealingKey(r))
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
            Command::Rollout(ticket, req, reply) => {
                let (ws, config, runs) = (ws.clone(), config.clone(), runs.clone());
                let sink = Sink::new(ticket, events.clone());
                work.spawn_blocking(move || {
                    let r = super::rollout::request_with(
                        &ws,
                        &config,
                        &req.env,
                        req.request,
                        &req.asker,
                        &runs,
                        &sink,
                    );
                    report_failure(&sink, &r);
                    let _ = reply.send(r);
                });
            }
            Command::Consolidate(ticket, req, reply) => {
                let (ws, config) = (ws.clone(), config.clone());
                let sink = Sink::new(ticket, events.clone());
                work.spawn_blocking(move || {
                    let r =
                        super::rollout::consolidate(&ws, &config, &req.env, req.winner, &req.asker);
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
            Command::Steer(ticket, req, reply) => {
                let (ws, config, runs) = (ws.clone(), config.clone(), runs.clone());
                let sink = Sink::new(ticket, events.clone());
                work.spawn_blocking(move || {
                    let r = steer_anywhere(&ws, &config, &runs, &req, &sink);
                    report_failure(&sink, &r);
                    let _ = reply.send(r);
                });
            }
            Command::RouterServe(target, reply) => {
                let config = config.clone();
                work.spawn_blocking(move || {
                    let _ = reply.send(super::router::serve(&config, &target));
                });
            }
            Command::RouterStart(target, reply) => {
                let config = config.clone();
                work.spawn_blocking(move || {
                    let _ = reply.send(super::router::start(&config, &target));
                });
            }
            Command::RouterStop(target, reply) => {
                let config = config.clone();
                work.spawn_blocking(move || {
                    let _ = reply.send(super::router::stop(&config, &target));
                });
            }
            Command::Recover(ticket, reply) => {
                let (ws, config) = (ws.clone(), config.clone());
                let sink = Sink::new(ticket, events.clone());
                work.spawn_blocking(move || {
                    let r = super::deploy::recover(&ws, &config).map_err(EngineError::from);
                    if let Ok(lines) = &r {
                        for l in lines {
                            sink.emit(EventKind::Note(l.clone()));
                        }
                    }
                    report_failure(&sink, &r);
                    let _ = reply.send(r);
                });
            }
            Command::MarkLive(req, reply) => {
                let (ws, config, events) = (ws.clone(), config.clone(), events.clone());
                work.spawn_blocking(move || {
                    let r = mark_live(&ws, &config, &req);
                    if r.is_ok() {
                        recorded(
                            &events,
                            format!("{}@{} live in {}", req.app, req.digest, req.env),
                        );
                    }
                    let _ = reply.send(r);
                });
            }
            Command::Attach(req, reply) => {
                let (ws, events) = (ws.clone(), events.clone());
                work.spawn_blocking(move || {
                    let r = attach_evidence(&ws, &req);
                    if let Ok(a) = &r {
                        recorded(
                            &events,
                            format!(
                                "{} {} attached to {}",
                                a.record.kind, a.record.digest, req.subject
                            ),
                        );
                    }
                    let _ = reply.send(r);
                });
            }
            Command::AddKey(req, reply) => {
                let (ws, events) = (ws.clone(), events.clone());
                work.spawn_blocking(move || {
                    let r = add_key(&ws, &req);
                    if r.is_ok() {
                        recorded(&events, format!("key `{}` for {}", req.name, req.email));
                    }
                    let _ = reply.send(r);
                });
            }
            Command::PushCapsules(ticket, which, reply) => {
                let (ws, config) = (ws.clone(), config.clone());
                let sink = Sink::new(ticket, events.clone());
                work.spawn_blocking(move || {
                    let r = super::publish::push(&ws, &config, &which, &sink);
                    report_failure(&sink, &r);
                    let _ = reply.send(r);
                });
            }
            Command::SealingKey(reply) => {
                let (ws, config) = (ws.clone(), config.clone());
                work.spawn_blocking(move || {
                    let _ = reply.send(ensure_sealing_key(&ws, &config));
                });
            }
            Command::Resolve(spec, reply) => {
                let (ws, config) = (ws.clone(), config.clone());
                work.spawn_blocking(move || {
                    let root = ws.root().to_owned();
                    let _ = reply.send(resolve_and_record(Some(&ws), Some(&config), &root, *spec));
                });
            }
            Command::AppRelease(req, reply) => {
                let (ws, config) = (ws.clone(), config.clone());
                work.spawn_blocking(move || {
                    let _ = reply.send(app_release_with(
                        &ws,
                        &config,
                        &req.reference,
                        req.env.as_deref(),
                        &req.now,
                        req.record,
                    ));
                });
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

/// A committed change to the record, as an event.
fn recorded(events: &mpsc::UnboundedSender<EngineEvent>, what: String) {
    let _ = events.send(EngineEvent {
        ticket: 0,
        kind: EventKind::Recorded(what),
    });
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
                "`steer` (`stella promotion pause|resume|abort ID`) reaches a run of any process",
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

/// A run of this process is steered directly (its row says `paused`
/// before the event is sent); any other through `steer`.
fn steer_anywhere(
    ws: &Workspace,
    config: &Config,
    runs: &Runs,
    req: &SteerRequest,
    sink: &Sink,
) -> Result<Steered, EngineError> {
    let id = req.promotion_id;
    if runs.get(id).is_none() {
        return steer(ws, config, req, sink);
    }
    let (change, kind) = match req.request {
        OperatorRequest::Pause => (Change::Pause, EventKind::Paused { promotion_id: id }),
        OperatorRequest::Resume => (Change::Resume, EventKind::Resumed { promotion_id: id }),
        OperatorRequest::Abort => (Change::Abort, EventKind::Aborting { promotion_id: id }),
        OperatorRequest::PromoteNow => return steer(ws, config, req, sink),
    };
    control(ws, runs, id, change)?;
    sink.emit(kind);
    Ok(Steered {
        request_id: None,
        capsule_id: None,
        taken_over: false,
        lines: vec![],
    })
}
