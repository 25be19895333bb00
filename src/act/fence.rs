//! The fence an attempt passes before every helpdesk write.

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use super::ActError;

/// Why an attempt must not write to the helpdesk any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    /// The worker is shutting down and the drain deadline has passed.
    #[error("the worker is shutting down")]
    Shutdown,
    /// Renewing the claim found another worker holding it.
    #[error("the claim was lost to another worker")]
    LeaseLost,
}

/// Whether an attempt may still write to the helpdesk: checked before every write, stopped by
/// whoever watches the attempt (shutdown, lease renewal).
///
/// A write already sent is never abandoned half-way: the request may have reached the helpdesk,
/// and a second worker that took the ticket over could not see its note yet and would post
/// another. So the watcher stops the attempt at its next write instead of dropping it, once
/// [`Fence::started_writing`] says a write may be in flight.
#[derive(Debug, Default)]
pub struct Fence {
    stopped: OnceLock<Stop>,
    writing: AtomicBool,
}

impl Fence {
    /// Stops the attempt before its next helpdesk write (the first reason given stays).
    pub fn stop(&self, why: Stop) {
        let _ = self.stopped.set(why);
    }

    /// Whether this attempt has begun writing to the helpdesk (dropping it now could leave a
    /// request in flight).
    pub fn started_writing(&self) -> bool {
        self.writing.load(Ordering::Acquire)
    }

    /// Passes before a helpdesk write, or says why the attempt must stop.
    pub(super) fn pass(&self) -> Result<(), ActError> {
        // Marked first: a watcher that stops the attempt from now on waits for it instead of
        // dropping it.
        self.writing.store(true, Ordering::Release);
        match self.stopped.get() {
            Some(why) => Err(ActError::Stopped(*why)),
            None => Ok(()),
        }
    }
}
