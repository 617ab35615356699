//! The etcd backend: leases are etcd leases and each registration is a key attached to its
//! lease, so several registry replicas share one view and etcd expires what is not kept
//! alive. Reads (ListTools, ResolveTool, Watch) are answered from a local cache fed by an
//! etcd watch; every write returns once the cache has caught up with it, so a client reads
//! its own writes from the replica it wrote to.
//!
//! Keys under the prefix (default `/mimo/registry/`), all attached to their lease:
//! `leases/<lease>` (the granted TTL in ms), `skills/<lease>/<skill>` (a `StoredSkill`),
//! and `revoked/<lease>`, written just before a revoke so that watchers tell a revoke from
//! an expiry. `<lease>` is the lease id in 16 hex digits.

use crate::catalog::Departure;
use crate::config::RegistryConfig;
use crate::error::RegistryError;
use crate::state::{CacheOp, RegistryState};
use mimo_etcd::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient,
    watch_request::RequestUnion, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseRevokeRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};
use mimo_etcd::mvccpb::{event::EventType, KeyValue};
use mimo_proto::v1::{StoredSkill, Tool};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// Longest any one etcd call may take.
const ETCD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a write waits for the cache to see it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Key prefix used when the store address names none.
pub const DEFAULT_PREFIX: &str = "/mimo/registry/";

/// Where the etcd backend keeps its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `host:port` of each etcd member; requests are spread over them.
    pub endpoints: Vec<String>,
    /// Prefix of every key, ending in `/`.
    pub prefix: String,
}

impl EtcdConfig {
    /// Parses `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`.
    pub fn parse(address: &str) -> Result<EtcdConfig, String> {
        let rest = address
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("{address:?} is not an etcd://HOST:PORT[,...] address"))?;
        let (hosts, prefix) = match rest.split_once('/') {
            Some((hosts, path)) if !path.trim_matches('/').is_empty() => {
                (hosts, format!("/{}/", path.trim_matches('/')))
            }
            Some((hosts, _)) => (hosts, DEFAULT_PREFIX.to_string()),
            None => (rest, DEFAULT_PREFIX.to_string()),
        };
        let endpoints = mimo_proto::connect::address_list(hosts);
        if endpoints.is_empty() {
            return Err(format!("{address:?} names no etcd member"));
        }
        for endpoint in &endpoints {
            if endpoint
                .rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
            {
                return Err(format!("etcd member {endpoint:?} is not HOST:PORT"));
            }
        }
        Ok(EtcdConfig { endpoints, prefix })
    }
}

/// The registry's state kept in etcd, with a local cache for reads.
#[derive(Debug)]
pub struct EtcdStore {
    config: RegistryConfig,
    prefix: String,
    kv: KvClient<Channel>,
    leases: LeaseClient<Channel>,
    cache: Arc<RegistryState>,
    /// The revision the cache has applied.
    applied: watch::Receiver<u64>,
}

impl EtcdStore {
    /// Connects to etcd, loads what it holds into the cache and keeps the cache in step
    /// until `shutdown`.
    pub async fn connect(
        config: RegistryConfig,
        etcd: &EtcdConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<EtcdStore>, RegistryError> {
        let endpoints = etcd
            .endpoints
            .iter()
            .map(|host| {
                Endpoint::from_shared(format!("http://{host}"))
                    .map(|e| e.connect_timeout(ETCD_TIMEOUT).tcp_nodelay(true))
                    .map_err(|e| RegistryError::StoreUnavailable(format!("etcd {host}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let channel = Channel::balance_list(endpoints.into_iter());
        let kv = KvClient::new(channel.clone());
        let snapshot = load(&mut kv.clone(), &etcd.prefix).await?;
        let cache = Arc::new(RegistryState::new_cache(config.clone(), snapshot.revision));
        cache.load(snapshot.ops(&etcd.prefix, &cache));
        tracing::info!(etcd = ?etcd.endpoints, prefix = %etcd.prefix, revision = snapshot.revision,
            skills = cache.counts().1, "registry state loaded from etcd");
        let (applied_sender, applied) = watch::channel(snapshot.revision);
        tokio::spawn(follow_etcd(
            kv.clone(),
            WatchClient::new(channel.clone()),
            etcd.prefix.clone(),
            cache.clone(),
            snapshot.revision,
            applied_sender,
            shutdown,
        ));
        Ok(Arc::new(EtcdStore {
            config,
            prefix: etcd.prefix.clone(),
            kv,
            leases: LeaseClient::new(channel),
            cache,
            applied,
        }))
    }

    /// The local cache, which answers every read.
    pub fn cache(&self) -> &Arc<RegistryState> {
        &self.cache
    }

    /// Grants an etcd lease (its TTL rounded up to whole seconds, as etcd counts).
    pub async fn grant(&self, ttl_ms: u64) -> Result<(u64, Duration), RegistryError> {
        self.cache.check_ttl(ttl_ms)?;
        let (leases, _, _) = self.cache.counts();
        crate::state::check_limit("leases", leases, 1, self.config.max_leases)?;
        let seconds = ttl_ms.div_ceil(1000) as i64;
        let granted = timed(self.leases.clone().lease_grant(LeaseGrantRequest {
            ttl: seconds,
            id: 0,
        }))
        .await?;
        if !granted.error.is_empty() {
            return Err(RegistryError::StoreUnavailable(granted.error));
        }
        let lease = granted.id as u64;
        let ttl = Duration::from_secs(granted.ttl.max(0) as u64);
        let marker = PutRequest {
            key: self.key(&format!("leases/{lease:016x}")),
            value: (ttl.as_millis() as u64).to_string().into_bytes(),
            lease: granted.id,
            ..PutRequest::default()
        };
        let put = timed(self.kv.clone().put(marker)).await?;
        self.caught_up(revision_of(put.header.as_ref())).await?;
        tracing::debug!(lease, ttl_ms = ttl.as_millis() as u64, "etcd lease granted");
        Ok((lease, ttl))
    }

    /// Opens an etcd keep-alive stream refreshing each lease id sent on `requests`.
    pub async fn keep_alive_stream(
        &self,
        requests: tokio::sync::mpsc::Receiver<u64>,
    ) -> Result<tonic::Streaming<LeaseKeepAliveResponse>, RegistryError> {
        let counters = self.cache.clone();
        let outbound = tokio_stream::wrappers::ReceiverStream::new(requests).map(move |lease| {
            counters
                .counters
                .keep_alives
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            LeaseKeepAliveRequest { id: lease as i64 }
        });
        timed(self.leases.clone().lease_keep_alive(outbound)).await
    }

    /// Revokes a lease and everything attached to it; returns how many skills went.
    pub async fn revoke(&self, lease: u64) -> Result<usize, RegistryError> {
        let skills = self.cache.skills_of(lease).len();
        let marker = PutRequest {
            key: self.key(&format!("revoked/{lease:016x}")),
            lease: lease as i64,
            ..PutRequest::default()
        };
        timed(self.kv.clone().put(marker))
            .await
            .map_err(|e| lease_error(e, lease))?;
        let revoked = timed(
            self.leases
                .clone()
                .lease_revoke(LeaseRevokeRequest { id: lease as i64 }),
        )
        .await
        .map_err(|e| lease_error(e, lease))?;
        self.caught_up(revision_of(revoked.header.as_ref())).await?;
        tracing::info!(lease, skills_removed = skills, "lease revoked");
        Ok(skills)
    }

    /// (remaining, granted TTL, skill names) of a lease.
    pub async fn time_to_live(
        &self,
        lease: u64,
    ) -> Result<(Duration, Duration, Vec<String>), RegistryError> {
        let answer = self.live_lease(lease).await?;
        Ok((
            Duration::from_secs(answer.ttl as u64),
            Duration::from_secs(answer.granted_ttl.max(0) as u64),
            self.cache.skills_of(lease),
        ))
    }

    /// Registers or replaces a skill's catalogue under a lease; returns the public names.
    pub async fn register_skill(
        &self,
        lease: u64,
        skill: &str,
        endpoint: &str,
        tools: Vec<Tool>,
    ) -> Result<Vec<String>, RegistryError> {
        let endpoint = match self
            .cache
            .prepare_registration(lease, skill, endpoint, &tools)
        {
            Err(RegistryError::LeaseNotFound(_)) => {
                // Granted through another replica, perhaps, and not seen here yet.
                self.catch_up_with_lease(lease).await?;
                self.cache
                    .prepare_registration(lease, skill, endpoint, &tools)?
            }
            other => other?,
        };
        let tool_count = tools.len();
        let value = StoredSkill {
            endpoint: endpoint.clone(),
            tools,
        };
        let put = PutRequest {
            key: self.key(&format!("skills/{lease:016x}/{skill}")),
            value: value.encode_to_vec(),
            lease: lease as i64,
            ..PutRequest::default()
        };
        let put = timed(self.kv.clone().put(put))
            .await
            .map_err(|e| lease_error(e, lease))?;
        self.caught_up(revision_of(put.header.as_ref())).await?;
        self.cache
            .counters
            .registrations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(lease, skill, %endpoint, tools = tool_count, "skill registered in etcd");
        Ok(self.cache.names_of(lease, skill))
    }

    /// Removes one skill from a lease; returns how many tools went with it.
    pub async fn unregister_skill(&self, lease: u64, skill: &str) -> Result<usize, RegistryError> {
        if !self.cache.has_lease(lease) {
            self.catch_up_with_lease(lease).await?;
        }
        let removed = self.cache.tools_of(lease, skill);
        let delete = DeleteRangeRequest {
            key: self.key(&format!("skills/{lease:016x}/{skill}")),
            ..DeleteRangeRequest::default()
        };
        let deleted = timed(self.kv.clone().delete_range(delete)).await?;
        if deleted.deleted > 0 {
            self.caught_up(revision_of(deleted.header.as_ref())).await?;
        }
        tracing::info!(
            lease,
            skill,
            tools_removed = removed,
            "skill unregistered in etcd"
        );
        Ok(removed)
    }

    /// etcd's view of a lease it still has; `LeaseNotFound` when it has not.
    async fn live_lease(&self, lease: u64) -> Result<LeaseTimeToLiveResponse, RegistryError> {
        let answer = timed(
            self.leases
                .clone()
                .lease_time_to_live(LeaseTimeToLiveRequest {
                    id: lease as i64,
                    keys: false,
                }),
        )
        .await
        .map_err(|e| lease_error(e, lease))?;
        if answer.ttl < 0 {
            return Err(RegistryError::LeaseNotFound(lease));
        }
        Ok(answer)
    }

    /// Waits until the cache has seen a lease that etcd has (granted through another
    /// replica a moment ago); `LeaseNotFound` when etcd does not have it.
    async fn catch_up_with_lease(&self, lease: u64) -> Result<(), RegistryError> {
        let answer = self.live_lease(lease).await?;
        self.caught_up(revision_of(answer.header.as_ref())).await?;
        if self.cache.has_lease(lease) {
            Ok(())
        } else {
            Err(RegistryError::LeaseNotFound(lease))
        }
    }

    fn key(&self, rest: &str) -> Vec<u8> {
        format!("{}{rest}", self.prefix).into_bytes()
    }

    /// Waits until the cache has applied `revision`, so that a write is read back at once.
    async fn caught_up(&self, revision: u64) -> Result<(), RegistryError> {
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout(CATCH_UP_TIMEOUT, async {
            applied.wait_for(|at| *at >= revision).await.map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(RegistryError::StoreUnavailable(
                "the registry stopped following etcd".into(),
            )),
            Err(_) => Err(RegistryError::StoreUnavailable(format!(
                "the write went to etcd (revision {revision}) but this replica's view has not \
                 caught up within {CATCH_UP_TIMEOUT:?}"
            ))),
        }
    }
}

/// Runs an etcd call with the store's timeout.
async fn timed<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(ETCD_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status_error(status)),
        Err(_) => Err(RegistryError::StoreUnavailable(format!(
            "etcd did not answer within {ETCD_TIMEOUT:?}"
        ))),
    }
}

fn status_error(status: tonic::Status) -> RegistryError {
    if status.code() == tonic::Code::NotFound && status.message().contains("lease not found") {
        return RegistryError::LeaseNotFound(0);
    }
    RegistryError::StoreUnavailable(format!("etcd: {}", status.message()))
}

/// Names the lease in a `LeaseNotFound` from etcd.
fn lease_error(error: RegistryError, lease: u64) -> RegistryError {
    match error {
        RegistryError::LeaseNotFound(_) => RegistryError::LeaseNotFound(lease),
        other => other,
    }
}

fn revision_of(header: Option<&mimo_etcd::etcdserverpb::ResponseHeader>) -> u64 {
    header.map_or(0, |h| h.revision.max(0) as u64)
}

/// Every key under the prefix at one revision.
struct Snapshot {
    revision: u64,
    kvs: Vec<KeyValue>,
}

impl Snapshot {
    /// The cache operations that turn `cache` into this snapshot: what it lacks is added, what
    /// it has that etcd no longer has is removed (as an expiry when its lease is gone).
    fn ops(&self, prefix: &str, cache: &RegistryState) -> Vec<CacheOp> {
        let mut leases = BTreeMap::new();
        let mut skills = BTreeMap::new();
        for kv in &self.kvs {
            match parse_key(prefix, &kv.key) {
                Some(Key::Lease(lease)) => {
                    leases.insert(lease, lease_ttl(&kv.value));
                }
                Some(Key::Skill(lease, skill)) => {
                    if let Some(stored) = decode_skill(kv, lease, &skill) {
                        skills.insert((lease, skill), stored);
                    }
                }
                Some(Key::Revoked(_)) | None => {}
            }
        }
        let mut ops = Vec::new();
        let (cached_leases, cached_skills) = cache.contents();
        for (lease, skill) in &cached_skills {
            if !skills.contains_key(&(*lease, skill.clone())) && leases.contains_key(lease) {
                ops.push(CacheOp::DeleteSkill {
                    lease: *lease,
                    skill: skill.clone(),
                    why: Departure::Removed,
                });
            }
        }
        for lease in cached_leases.difference(&leases.keys().copied().collect()) {
            ops.push(CacheOp::LeaseGone {
                lease: *lease,
                why: Departure::Expired,
            });
        }
        for (lease, ttl) in leases {
            ops.push(CacheOp::LeaseSeen { lease, ttl });
        }
        for ((lease, skill), stored) in skills {
            if cache.skill_entry(lease, &skill).as_ref()
                != Some(&(stored.endpoint.clone(), stored.tools.clone()))
            {
                ops.push(CacheOp::PutSkill {
                    lease,
                    skill,
                    endpoint: stored.endpoint,
                    tools: stored.tools,
                });
            }
        }
        ops
    }
}

async fn load(kv: &mut KvClient<Channel>, prefix: &str) -> Result<Snapshot, RegistryError> {
    let range = RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_end(prefix.as_bytes()),
        ..RangeRequest::default()
    };
    let answer = timed(kv.range(range)).await?;
    Ok(Snapshot {
        revision: revision_of(answer.header.as_ref()),
        kvs: answer.kvs,
    })
}

/// The smallest key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// What a key under the prefix is.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    Lease(u64),
    Revoked(u64),
    Skill(u64, String),
}

fn parse_key(prefix: &str, key: &[u8]) -> Option<Key> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    let lease = |hex: &str| u64::from_str_radix(hex, 16).ok();
    if let Some(hex) = rest.strip_prefix("leases/") {
        return lease(hex).map(Key::Lease);
    }
    if let Some(hex) = rest.strip_prefix("revoked/") {
        return lease(hex).map(Key::Revoked);
    }
    let (hex, skill) = rest.strip_prefix("skills/")?.split_once('/')?;
    Some(Key::Skill(lease(hex)?, skill.to_string()))
}

fn lease_ttl(value: &[u8]) -> Duration {
    let millis = std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_millis(millis)
}

/// The registration a key holds, if it is one this registry would have written: a
/// `StoredSkill` that passes the same checks as a RegisterSkill call, attached to the lease
/// its key names. Anything else under the prefix is skipped and logged.
fn decode_skill(kv: &KeyValue, lease: u64, skill: &str) -> Option<StoredSkill> {
    let key = String::from_utf8_lossy(&kv.key);
    let stored = match StoredSkill::decode(kv.value.as_slice()) {
        Ok(stored) => stored,
        Err(error) => {
            tracing::error!(%key, %error, "an etcd registration is not a StoredSkill; skipped");
            return None;
        }
    };
    if kv.lease as u64 != lease {
        tracing::error!(%key, attached = kv.lease, "an etcd registration is not attached to its lease; skipped");
        return None;
    }
    match crate::state::validate_registration(skill, &stored.endpoint, &stored.tools) {
        Ok(endpoint) => Some(StoredSkill {
            endpoint,
            tools: stored.tools,
        }),
        Err(error) => {
            tracing::error!(%key, %error, "an etcd registration is not valid; skipped");
            None
        }
    }
}

/// The cache operations of one etcd revision's events.
fn revision_ops(prefix: &str, events: &[&mimo_etcd::mvccpb::Event]) -> Vec<CacheOp> {
    let mut ended = BTreeSet::new();
    let mut revoked = BTreeSet::new();
    for event in events {
        let Some(kv) = &event.kv else { continue };
        if event.r#type() == EventType::Delete {
            match parse_key(prefix, &kv.key) {
                Some(Key::Lease(lease)) => {
                    ended.insert(lease);
                }
                Some(Key::Revoked(lease)) => {
                    revoked.insert(lease);
                }
                _ => {}
            }
        }
    }
    let why = |lease: u64| {
        if !ended.contains(&lease) || revoked.contains(&lease) {
            Departure::Removed
        } else {
            Departure::Expired
        }
    };
    let mut ops = Vec::new();
    for event in events {
        let Some(kv) = &event.kv else { continue };
        let key = parse_key(prefix, &kv.key);
        match (event.r#type(), key) {
            (EventType::Put, Some(Key::Lease(lease))) => ops.push(CacheOp::LeaseSeen {
                lease,
                ttl: lease_ttl(&kv.value),
            }),
            (EventType::Put, Some(Key::Skill(lease, skill))) => {
                if let Some(stored) = decode_skill(kv, lease, &skill) {
                    ops.push(CacheOp::PutSkill {
                        lease,
                        skill,
                        endpoint: stored.endpoint,
                        tools: stored.tools,
                    });
                }
            }
            (EventType::Delete, Some(Key::Skill(lease, skill))) => ops.push(CacheOp::DeleteSkill {
                lease,
                skill,
                why: why(lease),
            }),
            _ => {}
        }
    }
    for lease in ended.clone() {
        ops.push(CacheOp::LeaseGone {
            lease,
            why: why(lease),
        });
    }
    ops
}

/// Keeps `cache` in step with etcd: watches the prefix from `revision` on, applies each
/// revision's events as one change, and after any break reloads and reconciles.
///
/// The cache's revisions are etcd's plus an offset, zero until etcd's revision goes back (its
/// data was reset or restored from an older backup) or a reload finds changes at a revision
/// already published: the offset then grows so that the cache's revisions still only grow.
async fn follow_etcd(
    mut kv: KvClient<Channel>,
    watch_client: WatchClient<Channel>,
    prefix: String,
    cache: Arc<RegistryState>,
    mut revision: u64,
    applied: watch::Sender<u64>,
    shutdown: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut offset = 0u64;
    loop {
        let ended = tokio::select! {
            () = shutdown.cancelled() => return,
            ended = watch_from(&watch_client, &prefix, &cache, &mut revision, offset, &applied) => ended,
        };
        tracing::warn!(reason = %ended, retry_in_ms = backoff.as_millis() as u64,
            "the etcd watch ended; reloading the registry state");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match load(&mut kv, &prefix).await {
            Ok(snapshot) => {
                if snapshot.revision < revision {
                    tracing::warn!(was = revision, now = snapshot.revision,
                        "etcd's revision went back (its data was reset or restored); reloading all of it");
                }
                let ops = snapshot.ops(&prefix, &cache);
                let latest = cache.latest_revision();
                if snapshot.revision + offset <= latest
                    && (!ops.is_empty() || snapshot.revision < revision)
                {
                    offset = latest + 1 - snapshot.revision;
                }
                cache.apply(snapshot.revision + offset, ops);
                revision = snapshot.revision;
                applied.send_replace(revision);
                backoff = FIRST_BACKOFF;
            }
            Err(error) => tracing::warn!(%error, "cannot reload the registry state from etcd"),
        }
    }
}

/// Follows one etcd watch stream until it breaks; returns why.
async fn watch_from(
    watch_client: &WatchClient<Channel>,
    prefix: &str,
    cache: &RegistryState,
    revision: &mut u64,
    offset: u64,
    applied: &watch::Sender<u64>,
) -> String {
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            start_revision: (*revision + 1) as i64,
            ..WatchCreateRequest::default()
        })),
    };
    // The request stream stays open (pending) for as long as the watch runs.
    let requests = tokio_stream::once(create).chain(tokio_stream::pending());
    let mut answers = match watch_client.clone().watch(requests).await {
        Ok(response) => response.into_inner(),
        Err(status) => return format!("cannot watch: {}", status.message()),
    };
    loop {
        let answer = match answers.message().await {
            Ok(Some(answer)) => answer,
            Ok(None) => return "etcd closed the watch".into(),
            Err(status) => return format!("watch broke: {}", status.message()),
        };
        if answer.canceled {
            return format!(
                "etcd cancelled the watch (compacted at {}): {}",
                answer.compact_revision, answer.cancel_reason
            );
        }
        let mut by_revision: BTreeMap<i64, Vec<&mimo_etcd::mvccpb::Event>> = BTreeMap::new();
        for event in &answer.events {
            if let Some(kv) = &event.kv {
                by_revision.entry(kv.mod_revision).or_default().push(event);
            }
        }
        for (at, events) in by_revision {
            let at = at.max(0) as u64;
            cache.apply(at + offset, revision_ops(prefix, &events));
            *revision = at;
            applied.send_replace(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_addresses_name_members_and_an_optional_prefix() {
        let parsed = EtcdConfig::parse("etcd://10.0.0.1:2379,10.0.0.2:2379").unwrap();
        assert_eq!(parsed.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(parsed.prefix, DEFAULT_PREFIX);
        assert_eq!(
            EtcdConfig::parse("etcd://h:1/team/a").unwrap().prefix,
            "/team/a/"
        );
        assert!(EtcdConfig::parse("http://h:1").is_err());
        assert!(EtcdConfig::parse("etcd://").is_err());
        assert!(EtcdConfig::parse("etcd://nohost").is_err());
    }

    #[test]
    fn keys_round_trip_and_foreign_keys_are_ignored() {
        let prefix = DEFAULT_PREFIX;
        assert_eq!(
            parse_key(prefix, b"/mimo/registry/skills/00000000000000ff/time"),
            Some(Key::Skill(255, "time".into()))
        );
        assert_eq!(
            parse_key(prefix, b"/mimo/registry/leases/0000000000000001"),
            Some(Key::Lease(1))
        );
        assert_eq!(parse_key(prefix, b"/other/leases/1"), None);
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
    }
}
