//! Waiting on tasks inside `select!`: one an actor may or may not be running (the branch
//! stays pending while there is none, so the guard and the future never disagree), and
//! the long-lived actors a server must notice ending (a dead actor is never silent).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tokio::task::{JoinError, JoinHandle};

/// The task's result when there is one; never resolves for `None`.
pub async fn join_some<T>(task: Option<&mut JoinHandle<T>>) -> Result<T, JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// Named tasks that are meant to run until shutdown.
#[derive(Debug, Default)]
pub struct Actors {
    tasks: Vec<(&'static str, Option<JoinHandle<()>>)>,
}

/// An actor that ended before it was asked to.
#[derive(Debug, thiserror::Error)]
#[error("the {name} task ended unexpectedly: {how}")]
pub struct ActorDied {
    pub name: &'static str,
    pub how: String,
}

impl Actors {
    pub fn add(&mut self, name: &'static str, task: JoinHandle<()>) {
        self.tasks.push((name, Some(task)));
    }

    /// Resolves when any of the tasks ends (it is then no longer held); never resolves
    /// while none does. Cancel-safe.
    pub async fn first_exit(&mut self) -> ActorDied {
        std::future::poll_fn(|cx| {
            for (name, slot) in &mut self.tasks {
                let Some(task) = slot else { continue };
                if let Poll::Ready(r) = Pin::new(task).poll(cx) {
                    *slot = None;
                    let how = match r {
                        Ok(()) => "it returned".to_owned(),
                        Err(e) if e.is_panic() => {
                            let p = e.into_panic();
                            let msg = p
                                .downcast_ref::<&str>()
                                .map(|s| (*s).to_owned())
                                .or_else(|| p.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "no message".to_owned());
                            format!("it panicked: {msg}")
                        }
                        Err(_) => "it was cancelled".to_owned(),
                    };
                    return Poll::Ready(ActorDied { name, how });
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Takes a task out to await it in shutdown order; `None` if it already ended.
    pub fn take(&mut self, name: &str) -> Option<JoinHandle<()>> {
        self.tasks
            .iter_mut()
            .find(|(n, _)| *n == name)
            .and_then(|(_, t)| t.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_actor_to_end_is_named_with_its_panic() {
        let mut a = Actors::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        a.add(
            "calm",
            tokio::spawn(async move {
                let _ = rx.await;
            }),
        );
        a.add(
            "doomed",
            tokio::spawn(async {
                tokio::task::yield_now().await;
                panic!("boom");
            }),
        );
        let died = a.first_exit().await;
        assert_eq!(died.name, "doomed");
        assert_eq!(
            died.to_string(),
            "the doomed task ended unexpectedly: it panicked: boom"
        );
        assert!(
            a.take("doomed").is_none(),
            "an ended task is no longer held"
        );
        let calm = a.take("calm").unwrap();
        tx.send(()).unwrap();
        calm.await.unwrap();
    }
}
