//! Keeps the registry's view of this host true: each ready skill's catalogue registered
//! under a lease of its own, all kept alive by heartbeats on one stream. A skill that fails,
//! stops or is removed has its lease revoked; a lease the registry no longer knows (registry
//! restarted, long pause, network cut) is replaced by a new one and the skill registers again.

use crate::registered_leases::RegisteredLeases;
use crate::supervisor::Supervisor;
use mimo_proto::connect;
use mimo_proto::connect::Channel;
use mimo_proto::v1::registry_client::RegistryClient;
use mimo_proto::v1::{
    GrantLeaseRequest, KeepAliveRequest, RegisterSkillRequest, RevokeLeaseRequest, Tool,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Longest any single registry call may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Heartbeats queued on the keep-alive stream at most (one per skill per beat).
const BEAT_QUEUE: usize = 1024;

/// Where to register and how.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registry replicas' addresses, tried in turn: each session stays with one replica,
    /// and a lost session moves on to the next.
    pub registry_addresses: Vec<String>,
    /// This host's address as clients should dial it.
    pub endpoint: String,
    /// Lease TTL; heartbeats go every third of it.
    pub lease_ttl: Duration,
}

/// Splits a `--registry-address` value (`HOST:PORT[,HOST:PORT...]`) into replica addresses,
/// each checked, so that a bad one stops the host at start rather than leaving it unregistered.
pub fn registry_addresses(value: &str) -> Result<Vec<String>, connect::ConnectError> {
    let addresses = connect::address_list(value);
    if addresses.is_empty() {
        return Err(connect::ConnectError::InvalidAddress {
            address: value.to_string(),
            reason: "no registry address given".into(),
        });
    }
    for address in &addresses {
        connect::endpoint(address)?;
    }
    Ok(addresses)
}

/// Registers the ready skills among `skills` and keeps them registered until `shutdown`,
/// then revokes their leases.
pub async fn run_registrar(
    registration: Registration,
    skills: Arc<Supervisor>,
    leases: Arc<RegisteredLeases>,
    catalog_changed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut channels = Vec::new();
    for address in &registration.registry_addresses {
        match connect::lazy_channel(address) {
            Ok(channel) => channels.push((address.clone(), channel)),
            Err(error) => tracing::error!(%error, "skipping a registry address"),
        }
    }
    if channels.is_empty() {
        tracing::error!("no usable registry address; not registering skills");
        return;
    }
    // Kept across sessions: after a broken stream, the first heartbeats tell which leases
    // survived, and only the skills whose leases are gone register again.
    let mut registered = BTreeMap::new();
    let mut backoff = FIRST_BACKOFF;
    let mut turn = 0;
    loop {
        let (address, channel) = &channels[turn % channels.len()];
        let mut session = Session {
            client: connect::registry(channel.clone()),
            registration: &registration,
            skills: &skills,
            registered: &mut registered,
            leases: &leases,
            retry_pending: false,
        };
        match session.run(&catalog_changed, &shutdown).await {
            SessionEnd::Shutdown => return,
            SessionEnd::Lost { reason, was_up } => {
                if was_up {
                    backoff = FIRST_BACKOFF;
                }
                turn += 1;
                let next = &channels[turn % channels.len()].0;
                tracing::warn!(registry = %address, %reason, next_registry = %next,
                    retry_in_ms = backoff.as_millis() as u64, "registry session ended; connecting again");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        // Never wait longer than a heartbeat interval: a restarted registry gets every
        // skill back within two intervals of coming up.
        backoff = (backoff * 2).min(MAX_BACKOFF.min(registration.lease_ttl / 3));
    }
}

enum SessionEnd {
    Shutdown,
    Lost { reason: String, was_up: bool },
}

/// A skill's registration: the lease it lives under and the catalogue registered.
#[derive(Debug)]
struct Registered {
    lease: u64,
    tools: Vec<Tool>,
}

struct Session<'a> {
    client: RegistryClient<Channel>,
    registration: &'a Registration,
    skills: &'a Supervisor,
    registered: &'a mut BTreeMap<String, Registered>,
    /// What calls are checked against: updated after every change of `registered`.
    leases: &'a RegisteredLeases,
    /// A ready skill is not registered (refused, or its lease was not found): the next
    /// heartbeat tries again.
    retry_pending: bool,
}

impl Session<'_> {
    async fn run(&mut self, catalog_changed: &Notify, shutdown: &CancellationToken) -> SessionEnd {
        let end = self.serve(catalog_changed, shutdown).await;
        self.publish_leases();
        end
    }

    /// Shows calls the leases registered now.
    fn publish_leases(&self) {
        self.leases.replace(
            self.registered
                .iter()
                .map(|(skill, registered)| (skill.clone(), registered.lease))
                .collect(),
        );
    }

    async fn serve(
        &mut self,
        catalog_changed: &Notify,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let (beats, beat_receiver) = mpsc::channel(BEAT_QUEUE);
        let opened = tokio::time::timeout(
            RPC_TIMEOUT,
            self.client.keep_alive(ReceiverStream::new(beat_receiver)),
        )
        .await;
        let mut answers = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                return SessionEnd::Lost {
                    reason: format!("keep-alive: {}", status.message()),
                    was_up: false,
                }
            }
            Err(_) => {
                return SessionEnd::Lost {
                    reason: "keep-alive: timed out".into(),
                    was_up: false,
                }
            }
        };
        let lost = |reason: String| SessionEnd::Lost {
            reason,
            was_up: true,
        };
        if let Err(reason) = self.sync().await {
            // Not up until its catalogues are in: the retries back off.
            return SessionEnd::Lost {
                reason,
                was_up: false,
            };
        }
        let interval = self.registration.lease_ttl / 3;
        // Each heartbeat must be answered within this, well inside the interval, so that a
        // stalled stream is replaced before the next beat would queue behind the stalled one.
        let beat_timeout = interval * 2 / 3;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Heartbeats sent and not yet answered, by lease, with when they were sent.
        let mut unanswered: HashMap<u64, Instant> = HashMap::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.revoke_all().await;
                    return SessionEnd::Shutdown;
                }
                _ = ticker.tick() => {
                    if std::mem::take(&mut self.retry_pending) {
                        if let Err(reason) = self.sync().await {
                            return lost(reason);
                        }
                    }
                    let live: HashSet<u64> = self.registered.values().map(|r| r.lease).collect();
                    unanswered.retain(|lease, _| live.contains(lease));
                    if let Some(stalled) = unanswered.values().min() {
                        if stalled.elapsed() > beat_timeout {
                            return lost(format!(
                                "a heartbeat went unanswered for {} ms (limit {} ms); \
                                 opening a new keep-alive stream",
                                stalled.elapsed().as_millis(),
                                beat_timeout.as_millis()
                            ));
                        }
                    }
                    for registered in self.registered.values() {
                        // One heartbeat per lease in flight: the next waits for the answer.
                        if unanswered.contains_key(&registered.lease) {
                            continue;
                        }
                        if beats.try_send(KeepAliveRequest { lease_id: registered.lease }).is_err() {
                            tracing::debug!("keep-alive queue full; heartbeats skipped");
                            break;
                        }
                        unanswered.insert(registered.lease, Instant::now());
                    }
                }
                answer = answers.message() => match answer {
                    Ok(Some(answer)) => {
                        unanswered.remove(&answer.lease_id);
                        if answer.expired && self.forget_lease(answer.lease_id) {
                            if let Err(reason) = self.sync().await {
                                return lost(reason);
                            }
                        }
                    }
                    Ok(None) => return lost("registry closed the keep-alive stream".into()),
                    Err(status) => return lost(format!("keep-alive: {}", status.message())),
                },
                () = catalog_changed.notified() => {
                    if let Err(reason) = self.sync().await {
                        return lost(reason);
                    }
                }
            }
        }
    }

    /// Forgets the registration under an expired lease; returns whether there was one.
    fn forget_lease(&mut self, lease: u64) -> bool {
        let skill = self
            .registered
            .iter()
            .find(|(_, registered)| registered.lease == lease)
            .map(|(skill, _)| skill.clone());
        match skill {
            Some(skill) => {
                tracing::warn!(
                    skill,
                    lease,
                    "registry lease expired; registering the skill again"
                );
                self.registered.remove(&skill);
                true
            }
            None => false,
        }
    }

    /// Registers what changed since the last sync, each new skill under a lease of its own,
    /// and revokes the leases of skills no longer ready (failed, stopped or removed).
    async fn sync(&mut self) -> Result<(), String> {
        let synced = self.apply_catalogs().await;
        self.publish_leases();
        synced
    }

    async fn apply_catalogs(&mut self) -> Result<(), String> {
        let mut desired = BTreeMap::new();
        for skill in self.skills.skills() {
            if let Some(tools) = skill.catalog() {
                desired.insert(skill.name().to_string(), tools);
            }
        }
        for (skill, tools) in &desired {
            let existing = self
                .registered
                .get(skill)
                .map(|r| (r.lease, r.tools == *tools));
            let lease = match existing {
                Some((_, true)) => continue,
                Some((lease, false)) => lease,
                None => match self.grant().await? {
                    Some(lease) => lease,
                    None => {
                        self.retry_pending = true;
                        continue;
                    }
                },
            };
            match self.register(lease, skill, tools).await? {
                RegisterOutcome::Done => {}
                RegisterOutcome::LeaseGone => {
                    // Expired since the last heartbeat (or not yet seen by this replica):
                    // give it up and try again under a new lease at the next heartbeat.
                    self.registered.remove(skill);
                    self.revoke(lease, skill).await?;
                    self.retry_pending = true;
                }
                RegisterOutcome::Refused => {
                    // Not left half-registered: no stale catalogue stays behind. Tried again
                    // at the next heartbeat, as the registry's room may have grown.
                    self.registered.remove(skill);
                    self.revoke(lease, skill).await?;
                    self.retry_pending = true;
                }
            }
        }
        let gone: Vec<(String, u64)> = self
            .registered
            .iter()
            .filter(|(skill, _)| !desired.contains_key(*skill))
            .map(|(skill, registered)| (skill.clone(), registered.lease))
            .collect();
        for (skill, lease) in gone {
            self.revoke(lease, &skill).await?;
            self.registered.remove(&skill);
        }
        Ok(())
    }

    /// Grants a lease for one skill: `None` when the registry refuses it (a bound reached),
    /// which leaves the other skills alone; an error when the registry cannot be reached.
    async fn grant(&mut self) -> Result<Option<u64>, String> {
        let ttl_ms = self.registration.lease_ttl.as_millis() as u64;
        let granted = tokio::time::timeout(
            RPC_TIMEOUT,
            self.client.grant_lease(GrantLeaseRequest { ttl_ms }),
        )
        .await;
        match granted {
            Ok(Ok(response)) => Ok(Some(response.into_inner().lease_id)),
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::ResourceExhausted
                        | tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                ) =>
            {
                tracing::error!(error = %status.message(), "registry refused a lease; retrying at the next heartbeat");
                Ok(None)
            }
            Ok(Err(status)) => Err(format!("grant lease: {}", status.message())),
            Err(_) => Err("grant lease: timed out".into()),
        }
    }

    async fn register(
        &mut self,
        lease: u64,
        skill: &str,
        tools: &[Tool],
    ) -> Result<RegisterOutcome, String> {
        let request = RegisterSkillRequest {
            lease_id: lease,
            skill: skill.to_string(),
            endpoint: self.registration.endpoint.clone(),
            tools: tools.to_vec(),
        };
        match tokio::time::timeout(RPC_TIMEOUT, self.client.register_skill(request)).await {
            Ok(Ok(_)) => {
                tracing::info!(skill, tools = tools.len(), lease, "skill registered");
                self.registered.insert(
                    skill.to_string(),
                    Registered {
                        lease,
                        tools: tools.to_vec(),
                    },
                );
                Ok(RegisterOutcome::Done)
            }
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                Ok(RegisterOutcome::LeaseGone)
            }
            Ok(Err(status)) => {
                // The registry refused this skill (a bound, a bad name): others go on.
                tracing::error!(skill, error = %status.message(), "registry refused the skill");
                Ok(RegisterOutcome::Refused)
            }
            Err(_) => Err(format!("register {skill}: timed out")),
        }
    }

    /// Revokes a skill's lease, taking its tools out of the registry at once.
    async fn revoke(&mut self, lease: u64, skill: &str) -> Result<(), String> {
        let request = RevokeLeaseRequest { lease_id: lease };
        match tokio::time::timeout(RPC_TIMEOUT, self.client.revoke_lease(request)).await {
            Ok(Ok(_)) => {
                tracing::info!(skill, lease, "skill's registry lease revoked");
                Ok(())
            }
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => Ok(()),
            Ok(Err(status)) => Err(format!("revoke the lease of {skill}: {}", status.message())),
            Err(_) => Err(format!("revoke the lease of {skill}: timed out")),
        }
    }

    /// Revokes every lease on shutdown; stops at the first failure (the rest expire).
    async fn revoke_all(&mut self) {
        let leases: Vec<(String, u64)> = self
            .registered
            .iter()
            .map(|(skill, registered)| (skill.clone(), registered.lease))
            .collect();
        for (skill, lease) in leases {
            if let Err(reason) = self.revoke(lease, &skill).await {
                tracing::warn!(%reason, "could not revoke the registry leases; they will expire");
                return;
            }
            self.registered.remove(&skill);
        }
    }
}

/// How one RegisterSkill call ended.
#[derive(Debug, PartialEq, Eq)]
enum RegisterOutcome {
    Done,
    LeaseGone,
    Refused,
}
