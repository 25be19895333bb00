//! The async runtime every command runs on.
//!
//! A worker spends about a millisecond of CPU per ticket and the rest of the ticket's time
//! waiting for the LLM, the helpdesk, the broker and the disk. On one thread (tokio's
//! current-thread runtime) that work runs where the waits end: no thread has to wake another to
//! hand it a task, which is most of what a multi-thread runtime costs at this load (measured with
//! `cargo bench --bench worker`: about 0.2 ms of CPU per ticket). One thread serves hundreds of
//! tickets a second; more replicas, or `worker.threads`, serve more.

use std::io;

/// A runtime with `threads` threads: the current-thread runtime for 1, a multi-thread one above.
pub fn build(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
}
