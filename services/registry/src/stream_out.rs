//! Sending on a server stream without ever waiting on a client for long: a client that
//! leaves answers unread past a limit has its stream closed, and shutdown never waits on one.

use std::time::Duration;
use tokio::sync::mpsc::{self, error::SendTimeoutError};
use tokio_util::sync::CancellationToken;

/// How long a client may leave a stream's answers unread before the stream is closed.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(30);

/// Queues `item` for the client; `false` when the stream should end (the client went,
/// stalled past [`STALL_LIMIT`], or the registry is stopping).
pub(crate) async fn deliver<T>(
    sender: &mpsc::Sender<T>,
    item: T,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        sent = sender.send_timeout(item, STALL_LIMIT) => match sent {
            Ok(()) => true,
            Err(SendTimeoutError::Timeout(_)) => {
                tracing::warn!(stall_limit_s = STALL_LIMIT.as_secs(),
                    "a client left its stream unread past the limit; closing the stream");
                false
            }
            Err(SendTimeoutError::Closed(_)) => false,
        }
    }
}

/// Queues a last answer if there is room; never waits.
pub(crate) fn last_word<T>(sender: &mpsc::Sender<T>, item: T) {
    let _ = sender.try_send(item);
}
