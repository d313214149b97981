//! Requests from the socket API to the daemon's event loop, each with a reply channel
//! (the Firecracker pattern: the API thread parses, the owner acts).

use crate::api::ApiError;
use crate::status::Snapshot;
use hyper::StatusCode;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    RotateKeys,
    Backup,
    Check,
}

#[derive(Debug)]
pub struct Outcome {
    pub status: StatusCode,
    pub snapshot: Arc<Snapshot>,
}

pub type Reply = oneshot::Sender<Result<Outcome, ApiError>>;

#[derive(Debug)]
pub struct CommandRequest {
    pub command: Command,
    pub reply: Reply,
}

pub type CommandTx = mpsc::Sender<CommandRequest>;
pub type CommandRx = mpsc::Receiver<CommandRequest>;
