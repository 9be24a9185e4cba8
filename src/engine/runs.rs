//! The runs in flight in this process, by promotion id: how the handle's
//! pause, resume and abort reach a running workflow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::workflow::executor::Control;

#[derive(Clone, Default)]
pub struct Runs {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    runs: HashMap<i64, Control>,
    /// Shutting down: runs that start from now on start cancelled.
    closed: bool,
}

impl Runs {
    /// A fresh control for promotion `id`, registered until `remove`.
    pub fn register(&self, id: i64) -> Control {
        let c = Control::default();
        let mut inner = self.inner.lock().expect("runs lock");
        if inner.closed {
            c.cancel();
        }
        inner.runs.insert(id, c.clone());
        c
    }

    /// Cancels every run, and every run registered after.
    pub fn close(&self) {
        let mut inner = self.inner.lock().expect("runs lock");
        inner.closed = true;
        for c in inner.runs.values() {
            c.cancel();
        }
    }

    pub fn remove(&self, id: i64) {
        self.inner.lock().expect("runs lock").runs.remove(&id);
    }

    pub fn get(&self, id: i64) -> Option<Control> {
        self.inner.lock().expect("runs lock").runs.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_cancels_running_and_later_runs() {
        let runs = Runs::default();
        let early = runs.register(1);
        assert!(!early.is_cancelled());
        runs.close();
        assert!(early.is_cancelled());
        assert!(
            runs.register(2).is_cancelled(),
            "a run after shutdown starts cancelled"
        );
        runs.remove(1);
        assert!(runs.get(1).is_none() && runs.get(2).is_some());
    }
}
