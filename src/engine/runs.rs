//! The runs in flight in this process, by promotion id: how the handle's
//! pause, resume and abort reach a running workflow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::workflow::executor::Control;

#[derive(Clone, Default)]
pub struct Runs {
    inner: Arc<Mutex<HashMap<i64, Control>>>,
}

impl Runs {
    /// A fresh control for promotion `id`, registered until `remove`.
    pub fn register(&self, id: i64) -> Control {
        let c = Control::default();
        self.inner.lock().expect("runs lock").insert(id, c.clone());
        c
    }

    pub fn remove(&self, id: i64) {
        self.inner.lock().expect("runs lock").remove(&id);
    }

    pub fn get(&self, id: i64) -> Option<Control> {
        self.inner.lock().expect("runs lock").get(&id).cloned()
    }

    /// Every run in flight, for shutdown.
    pub fn all(&self) -> Vec<(i64, Control)> {
        self.inner
            .lock()
            .expect("runs lock")
            .iter()
            .map(|(id, c)| (*id, c.clone()))
            .collect()
    }
}
