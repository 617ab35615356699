//! One KeepAlive stream: each request refreshes one lease and gets one answer, in order;
//! an unknown lease is answered as expired and the stream goes on.

use crate::etcd_store::EtcdStore;
use crate::state::RegistryState;
use crate::stream_out::{deliver, last_word};
use mimo_proto::v1::{KeepAliveRequest, KeepAliveResponse};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

/// Answers queued per stream; a client that stops reading stalls only itself.
pub(crate) const KEEP_ALIVE_BUFFER: usize = 16;

type Sender = mpsc::Sender<Result<KeepAliveResponse, Status>>;

/// Answers from the in-memory lease table until the client goes or the registry stops.
pub(crate) async fn answer_from_memory(
    state: Arc<RegistryState>,
    mut inbound: Streaming<KeepAliveRequest>,
    sender: Sender,
    shutdown: CancellationToken,
) {
    loop {
        let Some(request) = next_request(&mut inbound, &sender, &shutdown).await else {
            return;
        };
        let reply = match state.keep_alive(request.lease_id) {
            Ok(ttl) => KeepAliveResponse {
                lease_id: request.lease_id,
                ttl_ms: ttl.as_millis() as u64,
                expired: false,
            },
            Err(_) => expired(request.lease_id),
        };
        if !deliver(&sender, Ok(reply), &shutdown).await {
            return;
        }
    }
}

/// Relays the stream to an etcd keep-alive stream of its own, answer for answer.
pub(crate) async fn relay_to_etcd(
    store: Arc<EtcdStore>,
    mut inbound: Streaming<KeepAliveRequest>,
    sender: Sender,
    shutdown: CancellationToken,
) {
    // etcd answers the stream's opening only with its first answer, so the first request
    // goes in before the stream is awaited.
    let Some(first) = next_request(&mut inbound, &sender, &shutdown).await else {
        return;
    };
    let (leases, queued) = mpsc::channel(KEEP_ALIVE_BUFFER);
    let _ = leases.try_send(first.lease_id);
    let mut answers = match store.keep_alive_stream(queued).await {
        Ok(answers) => answers,
        Err(error) => {
            last_word(&sender, Err(Status::from(error)));
            return;
        }
    };
    loop {
        tokio::select! {
            request = next_request(&mut inbound, &sender, &shutdown) => match request {
                Some(request) => {
                    if leases.send(request.lease_id).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            answer = answers.message() => {
                let reply = match answer {
                    Ok(Some(answer)) if answer.ttl > 0 => Ok(KeepAliveResponse {
                        lease_id: answer.id as u64,
                        ttl_ms: answer.ttl as u64 * 1000,
                        expired: false,
                    }),
                    Ok(Some(answer)) => Ok(expired(answer.id as u64)),
                    Ok(None) => Err(Status::unavailable("etcd ended the keep-alive stream; open a new one")),
                    Err(status) => Err(Status::unavailable(format!(
                        "etcd keep-alive stream broke: {}; open a new one",
                        status.message()
                    ))),
                };
                let ended = reply.is_err();
                if !deliver(&sender, reply, &shutdown).await || ended {
                    return;
                }
            }
        }
    }
}

/// The next request, or `None` once the client closed its side, the stream broke, or the
/// registry is stopping (which the client is told).
async fn next_request(
    inbound: &mut Streaming<KeepAliveRequest>,
    sender: &Sender,
    shutdown: &CancellationToken,
) -> Option<KeepAliveRequest> {
    let next = tokio::select! {
        () = shutdown.cancelled() => {
            last_word(sender, Err(Status::unavailable("registry is shutting down")));
            return None;
        }
        next = inbound.message() => next,
    };
    match next {
        Ok(request) => request,
        Err(status) => {
            tracing::debug!(error = %status.message(), "keep-alive stream broke");
            None
        }
    }
}

fn expired(lease_id: u64) -> KeepAliveResponse {
    KeepAliveResponse {
        lease_id,
        ttl_ms: 0,
        expired: true,
    }
}
