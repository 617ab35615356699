//! The registry's state: leases and catalogue behind one lock, so that a lease and
//! everything attached to it always change together, and the task that expires leases.

use crate::catalog::{Catalog, Departure};
use crate::config::RegistryConfig;
use crate::error::RegistryError;
use crate::leases::LeaseTable;
use crate::watch::{Change, Compacted, WatchHub};
use mimo_proto::v1::{RegisteredSkill, RegisteredTool, ResolveToolResponse, Tool};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest skill or tool name accepted.
const MAX_NAME_LEN: usize = 256;
/// Most tools in one ListTools answer.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Most bytes of tools in one ListTools answer, well under the gRPC message limit.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug)]
struct Tables {
    leases: LeaseTable,
    catalog: Catalog,
    /// Changes of `catalog`, published in the same critical section as the change itself.
    hub: WatchHub,
}

impl Tables {
    /// Publishes the catalogue's pending events as one change.
    fn publish(&mut self) {
        let events = self.catalog.take_events();
        self.hub.publish(events);
    }
}

/// One page of ListTools.
#[derive(Debug)]
pub struct ToolPage {
    /// The tools of this page, sorted by public name.
    pub tools: Vec<RegisteredTool>,
    /// Token for the next page; empty on the last.
    pub next_page_token: String,
    /// The catalogue's revision when the page was read.
    pub revision: u64,
}

/// Running totals since the registry started.
#[derive(Debug, Default)]
pub struct RegistryCounters {
    /// Heartbeats answered (known leases and expired ones).
    pub keep_alives: AtomicU64,
    /// Leases that expired.
    pub expirations: AtomicU64,
    /// RegisterSkill calls that succeeded.
    pub registrations: AtomicU64,
}

/// Shared registry state; every method is a short critical section with no await inside.
#[derive(Debug)]
pub struct RegistryState {
    config: RegistryConfig,
    tables: Mutex<Tables>,
    /// Woken when a lease is granted, so the expiry task can wait for an earlier deadline.
    deadline_changed: Notify,
    round_robin: AtomicUsize,
    watchers: AtomicUsize,
    /// Totals for the metrics.
    pub counters: RegistryCounters,
}

impl RegistryState {
    /// Returns an empty registry enforcing `config`.
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            tables: Mutex::new(Tables {
                leases: LeaseTable::new(),
                catalog: Catalog::default(),
                hub: WatchHub::new(config.watch_history, config.watch_history_bytes),
            }),
            config,
            deadline_changed: Notify::new(),
            round_robin: AtomicUsize::new(0),
            watchers: AtomicUsize::new(0),
            counters: RegistryCounters::default(),
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves consistent tables: every method updates them
        // in an order that never panics half-way, so poisoning is safe to ignore.
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Grants a lease; returns (id, ttl).
    pub fn grant(&self, ttl_ms: u64) -> Result<(u64, Duration), RegistryError> {
        self.check_ttl(ttl_ms)?;
        let ttl = Duration::from_millis(ttl_ms);
        let mut tables = self.tables();
        check_limit("leases", tables.leases.len(), 1, self.config.max_leases)?;
        let id = tables.leases.grant(ttl, Instant::now());
        drop(tables);
        self.deadline_changed.notify_one();
        tracing::debug!(lease = id, ttl_ms, "lease granted");
        Ok((id, ttl))
    }

    /// Refuses a TTL outside the configured bounds.
    pub(crate) fn check_ttl(&self, ttl_ms: u64) -> Result<(), RegistryError> {
        let ttl = Duration::from_millis(ttl_ms);
        if ttl < self.config.min_ttl || ttl > self.config.max_ttl {
            return Err(RegistryError::TtlOutOfRange {
                given: ttl_ms,
                min: self.config.min_ttl.as_millis() as u64,
                max: self.config.max_ttl.as_millis() as u64,
            });
        }
        Ok(())
    }

    /// Refreshes a lease; returns its TTL.
    pub fn keep_alive(&self, lease: u64) -> Result<Duration, RegistryError> {
        self.counters.keep_alives.fetch_add(1, Ordering::Relaxed);
        self.tables()
            .leases
            .keep_alive(lease, Instant::now())
            .ok_or(RegistryError::LeaseNotFound(lease))
    }

    /// Revokes a lease and removes its skills; returns how many skills went.
    pub fn revoke(&self, lease: u64) -> Result<usize, RegistryError> {
        let mut tables = self.tables();
        if !tables.leases.revoke(lease) {
            return Err(RegistryError::LeaseNotFound(lease));
        }
        let removed = tables.catalog.remove_lease(lease, Departure::Removed);
        tables.publish();
        tracing::info!(lease, skills_removed = removed, "lease revoked");
        Ok(removed)
    }

    /// Returns (remaining, granted TTL, skill names) of a lease.
    pub fn time_to_live(
        &self,
        lease: u64,
    ) -> Result<(Duration, Duration, Vec<String>), RegistryError> {
        let tables = self.tables();
        let (remaining, ttl) = tables
            .leases
            .time_to_live(lease, Instant::now())
            .ok_or(RegistryError::LeaseNotFound(lease))?;
        let skills = tables.catalog.skills_of(lease);
        Ok((remaining, ttl, skills))
    }

    /// Registers or replaces a skill's catalogue under a lease; returns the public names.
    pub fn register_skill(
        &self,
        lease: u64,
        skill: &str,
        endpoint: &str,
        tools: Vec<Tool>,
    ) -> Result<Vec<String>, RegistryError> {
        let endpoint = &validate_registration(skill, endpoint, &tools)?;
        let mut tables = self.tables();
        self.check_room(&tables, lease, skill, &tools)?;
        let tool_count = tools.len();
        let names = tables.catalog.register(lease, skill, endpoint, tools);
        tables.publish();
        drop(tables);
        self.counters.registrations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            lease,
            skill,
            endpoint,
            tools = tool_count,
            "skill registered"
        );
        Ok(names)
    }

    /// Checks a registration against the lease and the bounds without making it; returns
    /// the endpoint as it will be stored. For a store (etcd) that writes elsewhere first.
    pub(crate) fn prepare_registration(
        &self,
        lease: u64,
        skill: &str,
        endpoint: &str,
        tools: &[Tool],
    ) -> Result<String, RegistryError> {
        let endpoint = validate_registration(skill, endpoint, tools)?;
        self.check_room(&self.tables(), lease, skill, tools)?;
        Ok(endpoint)
    }

    /// The lease must be live and the skill and tool bounds must allow the registration.
    fn check_room(
        &self,
        tables: &Tables,
        lease: u64,
        skill: &str,
        tools: &[Tool],
    ) -> Result<(), RegistryError> {
        if tables.leases.time_to_live(lease, Instant::now()).is_none() {
            return Err(RegistryError::LeaseNotFound(lease));
        }
        let bytes: usize = tools.iter().map(prost::Message::encoded_len).sum();
        if bytes > self.config.max_catalogue_bytes {
            return Err(RegistryError::CatalogueTooLarge {
                skill: skill.to_string(),
                bytes,
                limit: self.config.max_catalogue_bytes,
            });
        }
        let replacing = tables.catalog.tools_of(lease, skill);
        let is_new_skill = !tables.catalog.has_skill(lease, skill);
        check_limit(
            "skills",
            tables.catalog.skill_count(),
            usize::from(is_new_skill),
            self.config.max_skills,
        )?;
        check_limit(
            "tools",
            tables.catalog.tool_count() - replacing,
            tools.len(),
            self.config.max_tools,
        )
    }

    /// Removes one skill from a lease; returns how many tools went with it.
    pub fn unregister_skill(&self, lease: u64, skill: &str) -> Result<usize, RegistryError> {
        let mut tables = self.tables();
        if tables.leases.time_to_live(lease, Instant::now()).is_none() {
            return Err(RegistryError::LeaseNotFound(lease));
        }
        let removed = tables
            .catalog
            .remove_skill(lease, skill, Departure::Removed);
        tables.publish();
        tracing::info!(lease, skill, tools_removed = removed, "skill unregistered");
        Ok(removed)
    }

    /// One page of live tools in (skill, tool) order, filtered by skill and public-name
    /// prefix when those are non-empty, starting where `page_token` (the previous page's
    /// `next_page_token`) says.
    pub fn list_tools(
        &self,
        skill: &str,
        name_prefix: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<ToolPage, RegistryError> {
        let page_size = match page_size as usize {
            0 => MAX_PAGE_SIZE,
            size if size > MAX_PAGE_SIZE => {
                return Err(RegistryError::InvalidArgument(format!(
                    "page_size is {size}; the largest page is {MAX_PAGE_SIZE} tools"
                )))
            }
            size => size,
        };
        let after = match page_token {
            "" => None,
            token => Some(parse_page_token(token)?),
        };
        let tables = self.tables();
        let mut tools = Vec::new();
        let mut next_page_token = String::new();
        let matching = tables
            .catalog
            .listing(skill, name_prefix, after)
            .filter_map(|(name, providers)| {
                let first = providers.first()?;
                Some(RegisteredTool {
                    name,
                    skill: first.skill.to_string(),
                    tool: Some((*first.tool).clone()),
                    endpoints: providers.iter().map(|p| p.endpoint.to_string()).collect(),
                })
            });
        let mut page_bytes = 0;
        for tool in matching {
            let bytes = prost::Message::encoded_len(&tool);
            // A page also ends before it would pass MAX_PAGE_BYTES (but holds at least one).
            if tools.len() == page_size
                || (!tools.is_empty() && page_bytes + bytes > MAX_PAGE_BYTES)
            {
                next_page_token = tools.last().map(page_token_after).unwrap_or_default();
                break;
            }
            page_bytes += bytes;
            tools.push(tool);
        }
        Ok(ToolPage {
            tools,
            next_page_token,
            revision: tables.hub.revision(),
        })
    }

    /// Opens a watch from `start` (0: from now on): the changes kept since then and a feed of
    /// the later ones, with a slot counted against the watcher limit until it is dropped.
    pub fn watch(
        self: &std::sync::Arc<Self>,
        start: u64,
    ) -> Result<Result<Subscription, Compacted>, RegistryError> {
        let open = self.watchers.fetch_add(1, Ordering::Relaxed);
        let slot = WatcherSlot(self.clone());
        if open >= self.config.max_watchers {
            return Err(RegistryError::LimitReached {
                what: "watchers",
                current: open,
                adding: 1,
                limit: self.config.max_watchers,
            });
        }
        let tables = self.tables();
        Ok(tables
            .hub
            .subscribe(start)
            .map(|(backlog, live)| Subscription {
                backlog,
                live,
                _slot: slot,
            }))
    }

    /// Changes from `start` on, for a watcher that fell behind its live feed.
    pub fn changes_since(&self, start: u64) -> Result<Vec<Change>, Compacted> {
        self.tables().hub.since(start)
    }

    /// The oldest revision a watch may start from now.
    pub fn oldest_revision(&self) -> u64 {
        self.tables().hub.oldest()
    }

    /// Number of Watch streams open.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Says which skill and endpoint serve a public tool name, spreading calls round robin.
    pub fn resolve_tool(&self, name: &str) -> Result<ResolveToolResponse, RegistryError> {
        if name.is_empty() {
            return Err(RegistryError::InvalidArgument(
                "tool name is empty; give a name as ListTools returns it".into(),
            ));
        }
        let tables = self.tables();
        let providers = tables.catalog.providers(name);
        let Some(first) = providers.first() else {
            return Err(RegistryError::ToolNotFound(name.to_string()));
        };
        let turn = self.round_robin.fetch_add(1, Ordering::Relaxed) % providers.len();
        Ok(ResolveToolResponse {
            skill: first.skill.to_string(),
            tool: first.tool.name.clone(),
            endpoint: providers[turn].endpoint.to_string(),
            endpoints: providers.iter().map(|p| p.endpoint.to_string()).collect(),
            lease_id: providers[turn].lease,
        })
    }

    /// Every registered skill with its host.
    pub fn list_skills(&self) -> Vec<RegisteredSkill> {
        self.tables()
            .catalog
            .registrations()
            .map(|registration| RegisteredSkill {
                skill: registration.skill.to_string(),
                endpoint: registration.endpoint.to_string(),
                lease_id: registration.lease,
                tool_count: registration.tools as u32,
            })
            .collect()
    }

    /// (leases, skills, tools) now registered.
    pub fn counts(&self) -> (usize, usize, usize) {
        let tables = self.tables();
        (
            tables.leases.len(),
            tables.catalog.skill_count(),
            tables.catalog.tool_count(),
        )
    }

    /// Removes leases as their deadlines pass, with everything attached, until `shutdown`.
    pub async fn run_expiry(&self, shutdown: CancellationToken) {
        loop {
            let next = self.tables().leases.next_deadline();
            let wait_for_deadline = async {
                match next {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.deadline_changed.notified() => continue,
                () = wait_for_deadline => {}
            }
            self.expire_due(Instant::now());
        }
    }

    fn expire_due(&self, now: Instant) {
        let mut tables = self.tables();
        for lease in tables.leases.take_expired(now) {
            let skills = tables.catalog.remove_lease(lease, Departure::Expired);
            tables.publish();
            self.counters.expirations.fetch_add(1, Ordering::Relaxed);
            tracing::info!(lease, skills_removed = skills, "lease expired");
        }
    }
}

/// One change made in a store of record (etcd), for a cache of it to apply.
#[derive(Debug)]
pub(crate) enum CacheOp {
    /// A lease exists.
    LeaseSeen { lease: u64, ttl: Duration },
    /// A lease ended, with everything under it.
    LeaseGone { lease: u64, why: Departure },
    /// A skill was registered, or its catalogue replaced.
    PutSkill {
        lease: u64,
        skill: String,
        endpoint: String,
        tools: Vec<Tool>,
    },
    /// A skill was removed.
    DeleteSkill {
        lease: u64,
        skill: String,
        why: Departure,
    },
}

impl RegistryState {
    /// Returns an empty cache of a store of record whose latest revision is `revision`:
    /// its leases never expire here (the store expires them), and changes come through
    /// [`RegistryState::apply`].
    pub(crate) fn new_cache(config: RegistryConfig, revision: u64) -> Self {
        let state = Self::new(config);
        state.tables().hub = WatchHub::starting_at(
            revision,
            state.config.watch_history,
            state.config.watch_history_bytes,
        );
        state
    }

    /// Loads what the store holds at the cache's start revision: the state watchers find
    /// when they start from there, so no change is published for it.
    pub(crate) fn load(&self, ops: Vec<CacheOp>) {
        let revision = self.tables().hub.revision();
        self.apply_ops(revision, ops, false);
    }

    /// Applies the store's change at `revision` as one step, published to watchers.
    pub(crate) fn apply(&self, revision: u64, ops: Vec<CacheOp>) {
        self.apply_ops(revision, ops, true);
    }

    fn apply_ops(&self, revision: u64, ops: Vec<CacheOp>, publish: bool) {
        // A cache's leases live until the store says they ended.
        let never = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let mut tables = self.tables();
        for op in ops {
            match op {
                CacheOp::LeaseSeen { lease, ttl } => tables.leases.insert(lease, ttl, never),
                CacheOp::LeaseGone { lease, why } => {
                    tables.leases.revoke(lease);
                    tables.catalog.remove_lease(lease, why);
                    if why == Departure::Expired {
                        self.counters.expirations.fetch_add(1, Ordering::Relaxed);
                    }
                }
                CacheOp::PutSkill {
                    lease,
                    skill,
                    endpoint,
                    tools,
                } => {
                    tables.catalog.register(lease, &skill, &endpoint, tools);
                }
                CacheOp::DeleteSkill { lease, skill, why } => {
                    tables.catalog.remove_skill(lease, &skill, why);
                }
            }
        }
        let events = tables.catalog.take_events();
        if publish {
            tables.hub.publish_at(revision, events);
        }
    }

    /// Revision of the latest change published.
    pub(crate) fn latest_revision(&self) -> u64 {
        self.tables().hub.revision()
    }

    /// Whether the lease is known here.
    pub(crate) fn has_lease(&self, lease: u64) -> bool {
        self.tables()
            .leases
            .time_to_live(lease, Instant::now())
            .is_some()
    }

    /// Public names of a registered skill's tools, in its order.
    pub(crate) fn names_of(&self, lease: u64, skill: &str) -> Vec<String> {
        self.tables().catalog.names_of(lease, skill)
    }

    /// Names of the skills registered under the lease.
    pub(crate) fn skills_of(&self, lease: u64) -> Vec<String> {
        self.tables().catalog.skills_of(lease)
    }

    /// Every lease known here, and every (lease, skill) registered.
    pub(crate) fn contents(&self) -> (std::collections::BTreeSet<u64>, Vec<(u64, String)>) {
        let tables = self.tables();
        (
            tables.leases.ids().collect(),
            tables
                .catalog
                .registrations()
                .map(|registration| (registration.lease, registration.skill.to_string()))
                .collect(),
        )
    }

    /// (endpoint, tools) of a registered skill.
    pub(crate) fn skill_entry(&self, lease: u64, skill: &str) -> Option<(String, Vec<Tool>)> {
        self.tables().catalog.entry(lease, skill)
    }

    /// (skill, tool) counts registered under the lease.
    pub(crate) fn tools_of(&self, lease: u64, skill: &str) -> usize {
        self.tables().catalog.tools_of(lease, skill)
    }
}

/// An open watch: what happened since its start revision, then the live changes.
#[derive(Debug)]
pub struct Subscription {
    /// Changes already made since the start revision, oldest first.
    pub backlog: Vec<Change>,
    /// Later changes as they happen.
    pub live: tokio::sync::broadcast::Receiver<Change>,
    _slot: WatcherSlot,
}

/// Counts one open watch until dropped.
#[derive(Debug)]
struct WatcherSlot(std::sync::Arc<RegistryState>);

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn check_limit(
    what: &'static str,
    current: usize,
    adding: usize,
    limit: usize,
) -> Result<(), RegistryError> {
    if current + adding > limit {
        return Err(RegistryError::LimitReached {
            what,
            current,
            adding,
            limit,
        });
    }
    Ok(())
}

fn validate_name(what: &str, name: &str) -> Result<(), RegistryError> {
    if name.trim().is_empty() {
        return Err(RegistryError::InvalidArgument(format!(
            "{what} name is empty"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(RegistryError::InvalidArgument(format!(
            "{what} name {name:?} holds a control character"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(RegistryError::InvalidArgument(format!(
            "{what} name is {} bytes; the limit is {MAX_NAME_LEN}",
            name.len()
        )));
    }
    Ok(())
}

/// Separates the skill and the tool in a page token.
const TOKEN_SEPARATOR: char = '\u{1f}';

/// The token of the page that starts after `tool`.
fn page_token_after(tool: &RegisteredTool) -> String {
    let original = tool.tool.as_ref().map_or("", |t| t.name.as_str());
    format!("{}{TOKEN_SEPARATOR}{original}", tool.skill)
}

fn parse_page_token(token: &str) -> Result<(String, String), RegistryError> {
    token
        .split_once(TOKEN_SEPARATOR)
        .map(|(skill, tool)| (skill.to_string(), tool.to_string()))
        .ok_or_else(|| {
            RegistryError::InvalidArgument(format!(
                "page_token {token:?} is not one ListTools gave; pass next_page_token as it came"
            ))
        })
}

/// Checks names and tools; returns the endpoint in its stored `host:port` form.
pub(crate) fn validate_registration(
    skill: &str,
    endpoint: &str,
    tools: &[Tool],
) -> Result<String, RegistryError> {
    validate_name("skill", skill)?;
    let endpoint = crate::endpoint::normalize_endpoint(endpoint).map_err(|reason| {
        RegistryError::InvalidArgument(format!("skill {skill:?}: endpoint {reason}"))
    })?;
    validate_tools(skill, tools)?;
    Ok(endpoint)
}

fn validate_tools(skill: &str, tools: &[Tool]) -> Result<(), RegistryError> {
    let mut seen = std::collections::HashSet::new();
    for tool in tools {
        validate_name("tool", &tool.name)
            .map_err(|error| RegistryError::InvalidArgument(format!("skill {skill:?}: {error}")))?;
        if !seen.insert(tool.name.as_str()) {
            return Err(RegistryError::InvalidArgument(format!(
                "skill {skill:?}: tool {:?} is listed twice",
                tool.name
            )));
        }
        let schema = serde_json::from_str::<serde_json::Value>(&tool.input_schema_json);
        if !matches!(schema, Ok(serde_json::Value::Object(_))) {
            return Err(RegistryError::InvalidArgument(format!(
                "skill {skill:?}, tool {:?}: input_schema_json is not a JSON object",
                tool.name
            )));
        }
    }
    Ok(())
}
