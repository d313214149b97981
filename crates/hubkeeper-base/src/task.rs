//! Waiting on a task an actor may or may not be running, inside `select!`: the branch
//! stays pending while there is none, so the guard and the future never disagree.

use tokio::task::{JoinError, JoinHandle};

/// The task's result when there is one; never resolves for `None`.
pub async fn join_some<T>(task: Option<&mut JoinHandle<T>>) -> Result<T, JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}
