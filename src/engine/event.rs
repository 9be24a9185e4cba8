//! Events sent by the engine, in the order things happened. Each carries
//! the ticket of the request it belongs to; a state change it reports was
//! committed to the store before it was sent.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::EngineError;
use crate::domain::{Decision, Digest, Verdict};
use crate::workflow::executor::StepState;

/// Names one request made through the handle.
pub type Ticket = u64;

#[derive(Debug, Clone)]
pub struct EngineEvent {
    pub ticket: Ticket,
    pub kind: EventKind,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    /// Something worth telling the person who asked (a moved tag, …).
    Note(String),
    /// A capsule and its verification summary are attached to the image.
    CapsuleAttached {
        capsule_id: i64,
        image: String,
        capsule_manifest: Digest,
        summary_manifest: Digest,
        /// `referrers API`, `referrers tag` or `image layout`.
        via: &'static str,
    },
    /// A push of a capsule's attachment failed; it stays pending (with
    /// `pending` others) and is tried again by later pushes.
    CapsuleAttachFailed {
        capsule_id: i64,
        image: String,
        error: String,
        attempts: i64,
        pending: i64,
    },
    /// A change to the record that moves no traffic, committed: a release
    /// marked live, evidence attached, a key added.
    Recorded(String),
    /// The release the request is about, resolved at promotion time.
    Resolved {
        app: String,
        digest: Digest,
        tag: Option<String>,
        environment: String,
    },
    /// An approval signed on the requester's behalf (`--approve`).
    Approved {
        signer: String,
        approval: Digest,
    },
    GatesEvaluated {
        app: String,
        digest: Digest,
        environment: String,
        at: DateTime<Utc>,
        decision: Decision,
        verdicts: Vec<Verdict>,
    },
    /// An allowed promotion (or rollback) took its environment's lock.
    PromotionCreated {
        promotion_id: i64,
        app: String,
        digest: Digest,
        environment: String,
        targets: Vec<String>,
        /// Step ids in template order, with what each needs: the DAG.
        steps: Vec<(String, Vec<String>)>,
        /// Its critical path, as the template's validation computed it.
        critical_path: Vec<String>,
    },
    StepStarted {
        promotion_id: i64,
        step: String,
        attempt: u32,
    },
    StepLog {
        promotion_id: i64,
        step: String,
        line: String,
    },
    StepFinished {
        promotion_id: i64,
        step: String,
        state: StepState,
        attempts: u32,
        duration: Duration,
        error: Option<String>,
    },
    /// A target now serves the release (one line of what changed).
    TargetSwitched {
        promotion_id: i64,
        detail: String,
    },
    /// A failed or aborted run put the previous release back.
    TargetsRestored {
        promotion_id: i64,
        lines: Vec<String>,
    },
    RunFinished {
        promotion_id: i64,
        ok: bool,
        failure: Option<String>,
    },
    Paused {
        promotion_id: i64,
    },
    Resumed {
        promotion_id: i64,
    },
    Aborting {
        promotion_id: i64,
    },
    /// The decision and its capsule are in the store; the file is exported.
    CapsuleSealed {
        promotion_id: i64,
        capsule_id: i64,
        outcome: crate::domain::PromotionOutcome,
        path: PathBuf,
    },
    /// The request ended in an error (its reply says so too).
    Failed {
        error: EngineError,
    },
}

/// Where one request's events go.
#[derive(Clone)]
pub struct Sink {
    ticket: Ticket,
    tx: mpsc::UnboundedSender<EngineEvent>,
}

impl Sink {
    pub fn new(ticket: Ticket, tx: mpsc::UnboundedSender<EngineEvent>) -> Sink {
        Sink { ticket, tx }
    }

    /// A sink nobody reads: for callers that want only the result.
    pub fn discard() -> Sink {
        Sink {
            ticket: 0,
            tx: mpsc::unbounded_channel().0,
        }
    }

    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    pub fn emit(&self, kind: EventKind) {
        // A closed receiver means nobody watches; the work goes on.
        let _ = self.tx.send(EngineEvent {
            ticket: self.ticket,
            kind,
        });
    }
}
