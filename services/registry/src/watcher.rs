//! One Watch stream: sends a subscriber the backlog, then live changes, resuming from the
//! history when it falls behind, filtered by skill.

use crate::state::{RegistryState, Subscription};
use crate::stream_out::{deliver, last_word};
use crate::watch::{Change, Compacted};
use mimo_proto::v1::WatchResponse;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

type Sender = mpsc::Sender<Result<WatchResponse, Status>>;

/// The answer that ends a watch whose place in the history is gone.
pub(crate) fn compacted_answer(compacted: Compacted) -> WatchResponse {
    WatchResponse {
        revision: 0,
        events: Vec::new(),
        compacted: true,
        compact_revision: compacted.oldest,
    }
}

/// Feeds `sender` until the client goes, the registry stops, or the watcher's place is lost.
pub(crate) async fn follow(
    state: Arc<RegistryState>,
    subscription: Subscription,
    skill: String,
    sender: Sender,
    shutdown: CancellationToken,
) {
    let Subscription {
        backlog, mut live, ..
    } = subscription;
    let mut last_sent = 0;
    for change in backlog {
        if !send(&sender, &change, &skill, &mut last_sent, &shutdown).await {
            return;
        }
    }
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => {
                last_word(&sender, Err(Status::unavailable("registry is shutting down")));
                return;
            }
            () = sender.closed() => return,
            next = live.recv() => next,
        };
        match next {
            Ok(change) => {
                if change.revision > last_sent
                    && !send(&sender, &change, &skill, &mut last_sent, &shutdown).await
                {
                    return;
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "a watcher fell behind; resuming from the history");
                let resume = if last_sent == 0 {
                    Err(Compacted {
                        oldest: state.oldest_revision(),
                    })
                } else {
                    state.changes_since(last_sent + 1)
                };
                match resume {
                    Ok(changes) => {
                        for change in changes {
                            if !send(&sender, &change, &skill, &mut last_sent, &shutdown).await {
                                return;
                            }
                        }
                    }
                    Err(compacted) => {
                        let _ = deliver(&sender, Ok(compacted_answer(compacted)), &shutdown).await;
                        return;
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Sends the change's events of `skill` (all when empty); returns false once the client went.
async fn send(
    sender: &Sender,
    change: &Change,
    skill: &str,
    last_sent: &mut u64,
    shutdown: &CancellationToken,
) -> bool {
    *last_sent = change.revision;
    let answer = if skill.is_empty() {
        (**change).clone()
    } else {
        let events: Vec<_> = change
            .events
            .iter()
            .filter(|event| event.skill == skill)
            .cloned()
            .collect();
        if events.is_empty() {
            return true;
        }
        WatchResponse {
            events,
            ..(**change).clone()
        }
    };
    deliver(sender, Ok(answer), shutdown).await
}
