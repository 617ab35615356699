//! The StoreStream RPC: requests read and checked as they come, stored concurrently so that
//! the writer can commit many in one transaction, and answered in order once committed.

use crate::store::MemoryStore;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use mimo_proto::v1::{StoreRequest, StoreResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// Stores at most this many engrams of one stream at a time (and so at most this many
/// unanswered requests are held).
const MAX_IN_FLIGHT: usize = 1024;
/// Responses buffered for a slow reader.
const RESPONSE_BUFFER: usize = 256;

/// Answers of a StoreStream call.
pub(crate) type StoreStreamResponses = ReceiverStream<Result<StoreResponse, Status>>;

/// Starts storing `requests`; the task ends with the stream, the first bad request, or when
/// the caller stops reading.
pub(crate) fn start(store: MemoryStore, requests: Streaming<StoreRequest>) -> StoreStreamResponses {
    let (sender, receiver) = mpsc::channel(RESPONSE_BUFFER);
    tokio::spawn(run(store, requests, sender));
    ReceiverStream::new(receiver)
}

async fn run(
    store: MemoryStore,
    mut requests: Streaming<StoreRequest>,
    responses: mpsc::Sender<Result<StoreResponse, Status>>,
) {
    let mut pending = FuturesOrdered::new();
    let mut position = 0_u64;
    // Why reading stopped early: a bad request (at its position) or a broken stream.
    let mut stopped: Option<Status> = None;
    let mut reading = true;
    loop {
        tokio::select! {
            biased;
            Some((at, result)) = pending.next(), if !pending.is_empty() => {
                let answer = match result {
                    Ok((engram, reinforced)) => Ok(StoreResponse {
                        engram: Some(engram),
                        reinforced,
                    }),
                    Err(error) => {
                        // A stored change failed: say so, store nothing more.
                        reading = false;
                        Err(at_position(at, Status::from(error)))
                    }
                };
                let failed = answer.is_err();
                if responses.send(answer).await.is_err() || failed {
                    return;
                }
            }
            next = requests.message(), if reading && pending.len() < MAX_IN_FLIGHT => {
                match next {
                    Ok(Some(mut request)) => {
                        position += 1;
                        // A stream is taken as it is (an import restores an export
                        // faithfully): no near-duplicate check, which would also make a bulk
                        // load quadratic below the approximate index's size.
                        request.allow_duplicate = true;
                        match store.check_store(request) {
                            Ok(valid) => {
                                // Polled in order, so ids (UUIDv7) follow the stream.
                                let store = store.clone();
                                let at = position;
                                pending.push_back(async move { (at, store.store_valid(valid).await) });
                            }
                            Err(error) => {
                                reading = false;
                                stopped = Some(at_position(position, Status::from(error)));
                            }
                        }
                    }
                    Ok(None) => reading = false,
                    Err(status) => {
                        tracing::debug!(%status, "store stream broke off");
                        return;
                    }
                }
            }
            else => break,
        }
    }
    if let Some(status) = stopped {
        let _ = responses.send(Err(status)).await;
    }
}

/// `status` with the (1-based) position of the request it answers.
fn at_position(position: u64, status: Status) -> Status {
    Status::new(
        status.code(),
        format!("request {position} of the stream: {}", status.message()),
    )
}
