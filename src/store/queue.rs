//! The waiting line of a group commit on a SQLite file (`group.rs`, `batch.rs`): callers queue an
//! item and wait for its answer; whichever caller takes the writer drains a batch and answers
//! each item.

use std::{
    collections::VecDeque,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::oneshot;

/// Items of type `T` waiting for the writer, each answered with an `R`.
pub(super) struct Queue<T, R> {
    queued: Mutex<VecDeque<Queued<T, R>>>,
    next_id: AtomicU64,
}

struct Queued<T, R> {
    id: u64,
    item: T,
    reply: oneshot::Sender<R>,
}

impl<T, R> Default for Queue<T, R> {
    fn default() -> Self {
        Self { queued: Mutex::new(VecDeque::new()), next_id: AtomicU64::new(0) }
    }
}

impl<T, R> Queue<T, R> {
    /// Queues `item`; its answer arrives on the receiver. The ticket takes it back out if it is
    /// still waiting when dropped (its caller gave up).
    pub(super) fn push(&self, item: T) -> (QueueTicket<'_, T, R>, oneshot::Receiver<R>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.lock().push_back(Queued { id, item, reply });
        (QueueTicket { queue: self, id }, rx)
    }

    /// Up to `max` of the oldest items whose callers still wait, with where to answer each.
    pub(super) fn take(&self, max: usize) -> Vec<(T, oneshot::Sender<R>)> {
        let mut queued = self.lock();
        queued.retain(|q| !q.reply.is_closed());
        let n = queued.len().min(max);
        queued.drain(..n).map(|q| (q.item, q.reply)).collect()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Queued<T, R>>> {
        // Only pushed to and drained; a panic elsewhere cannot leave it half-changed.
        self.queued.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes its item from the queue when dropped, unless a holder of the writer took it.
pub(super) struct QueueTicket<'a, T, R> {
    queue: &'a Queue<T, R>,
    id: u64,
}

impl<T, R> Drop for QueueTicket<'_, T, R> {
    fn drop(&mut self) {
        let mut queued = self.queue.lock();
        if let Some(at) = queued.iter().position(|q| q.id == self.id) {
            queued.remove(at);
        }
    }
}
