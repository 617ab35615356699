//! Keeps the registry's view of this host true: one lease for the host, kept alive by
//! heartbeats, and each ready skill's catalogue registered under it. When the lease is lost
//! (registry restarted, long pause, network cut) it grants a new one and registers again.

use crate::supervisor::Supervisor;
use mimo_proto::connect;
use mimo_proto::v1::registry_client::RegistryClient;
use mimo_proto::v1::{
    GrantLeaseRequest, KeepAliveRequest, RegisterSkillRequest, RevokeLeaseRequest, Tool,
    UnregisterSkillRequest,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Longest any single registry call may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where to register and how.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registry's address.
    pub registry_address: String,
    /// This host's address as clients should dial it.
    pub endpoint: String,
    /// Lease TTL; heartbeats go every third of it.
    pub lease_ttl: Duration,
}

/// Registers the ready skills among `skills` and keeps them registered until `shutdown`,
/// then revokes the lease.
pub async fn run_registrar(
    registration: Registration,
    skills: Arc<Supervisor>,
    catalog_changed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let channel = match connect::lazy_channel(&registration.registry_address) {
        Ok(channel) => channel,
        Err(error) => {
            tracing::error!(%error, "not registering skills");
            return;
        }
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let session = Session {
            client: connect::registry(channel.clone()),
            registration: &registration,
            skills: &skills,
            registered: BTreeMap::new(),
        };
        match session.run(&catalog_changed, &shutdown).await {
            SessionEnd::Shutdown => return,
            SessionEnd::Lost { reason, was_up } => {
                if was_up {
                    backoff = FIRST_BACKOFF;
                }
                tracing::warn!(registry = %registration.registry_address, %reason,
                    retry_in_ms = backoff.as_millis() as u64, "registry session ended; registering again");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum SessionEnd {
    Shutdown,
    Lost { reason: String, was_up: bool },
}

struct Session<'a> {
    client: RegistryClient<Channel>,
    registration: &'a Registration,
    skills: &'a Supervisor,
    registered: BTreeMap<String, Vec<Tool>>,
}

impl Session<'_> {
    async fn run(mut self, catalog_changed: &Notify, shutdown: &CancellationToken) -> SessionEnd {
        let lost = |reason: String| SessionEnd::Lost {
            reason,
            was_up: false,
        };
        let ttl_ms = self.registration.lease_ttl.as_millis() as u64;
        let granted = tokio::time::timeout(
            RPC_TIMEOUT,
            self.client.grant_lease(GrantLeaseRequest { ttl_ms }),
        )
        .await;
        let lease = match granted {
            Ok(Ok(response)) => response.into_inner().lease_id,
            Ok(Err(status)) => return lost(format!("grant lease: {}", status.message())),
            Err(_) => return lost("grant lease: timed out".into()),
        };
        tracing::info!(lease, ttl_ms, "registry lease granted");
        if let Err(reason) = self.sync(lease).await {
            return lost(reason);
        }
        let (beats, beat_receiver) = mpsc::channel(1);
        let opened = tokio::time::timeout(
            RPC_TIMEOUT,
            self.client.keep_alive(ReceiverStream::new(beat_receiver)),
        )
        .await;
        let mut answers = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return lost(format!("keep-alive: {}", status.message())),
            Err(_) => return lost("keep-alive: timed out".into()),
        };
        let mut ticker = tokio::time::interval(self.registration.lease_ttl / 3);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_answer = Instant::now();
        let up = |reason: String| SessionEnd::Lost {
            reason,
            was_up: true,
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    let revoke = self.client.revoke_lease(RevokeLeaseRequest { lease_id: lease });
                    match tokio::time::timeout(RPC_TIMEOUT, revoke).await {
                        Ok(Ok(_)) => tracing::info!(lease, "registry lease revoked"),
                        _ => tracing::warn!(lease, "could not revoke the registry lease; it will expire"),
                    }
                    return SessionEnd::Shutdown;
                }
                _ = ticker.tick() => {
                    if last_answer.elapsed() > self.registration.lease_ttl {
                        return up("no keep-alive answer within the lease TTL".into());
                    }
                    // A full queue means the previous heartbeat is still unanswered: skip.
                    let _ = beats.try_send(KeepAliveRequest { lease_id: lease });
                }
                answer = answers.message() => match answer {
                    Ok(Some(_)) => last_answer = Instant::now(),
                    Ok(None) => return up("registry closed the keep-alive stream".into()),
                    Err(status) => return up(format!("keep-alive: {}", status.message())),
                },
                () = catalog_changed.notified() => {
                    if let Err(reason) = self.sync(lease).await {
                        return up(reason);
                    }
                }
            }
        }
    }

    /// Registers what changed since the last sync and unregisters skills no longer ready.
    async fn sync(&mut self, lease: u64) -> Result<(), String> {
        let mut desired = BTreeMap::new();
        for skill in self.skills.skills() {
            if let Some(tools) = skill.catalog() {
                desired.insert(skill.name().to_string(), tools);
            }
        }
        for (skill, tools) in &desired {
            if self.registered.get(skill) == Some(tools) {
                continue;
            }
            let request = RegisterSkillRequest {
                lease_id: lease,
                skill: skill.clone(),
                endpoint: self.registration.endpoint.clone(),
                tools: tools.clone(),
            };
            match tokio::time::timeout(RPC_TIMEOUT, self.client.register_skill(request)).await {
                Ok(Ok(_)) => {
                    tracing::info!(skill, tools = tools.len(), lease, "skill registered");
                    self.registered.insert(skill.clone(), tools.clone());
                }
                Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                    return Err(format!("register {skill}: {}", status.message()));
                }
                Ok(Err(status)) => {
                    // The registry refused this skill (a bound, a bad name): others go on.
                    tracing::error!(skill, error = %status.message(), "registry refused the skill");
                }
                Err(_) => return Err(format!("register {skill}: timed out")),
            }
        }
        let gone: Vec<String> = self
            .registered
            .keys()
            .filter(|skill| !desired.contains_key(*skill))
            .cloned()
            .collect();
        for skill in gone {
            let request = UnregisterSkillRequest {
                lease_id: lease,
                skill: skill.clone(),
            };
            match tokio::time::timeout(RPC_TIMEOUT, self.client.unregister_skill(request)).await {
                Ok(Ok(_)) => {
                    tracing::info!(skill, lease, "skill unregistered");
                    self.registered.remove(&skill);
                }
                Ok(Err(status)) => return Err(format!("unregister {skill}: {}", status.message())),
                Err(_) => return Err(format!("unregister {skill}: timed out")),
            }
        }
        Ok(())
    }
}
