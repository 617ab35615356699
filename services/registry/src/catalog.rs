//! The catalogue of registered skills and their tools, indexed by skill (then lease), not by
//! tool: a public name `<skill>_<tool>` is found by splitting it at each `_`, so a tool costs a
//! pointer to its description (shared by every registration with the same one) and no index
//! entry of its own. Only names that are not plain (invalid characters, too long, or lost to a
//! smaller pair claiming the same plain name) are kept in a map of their own.

use crate::naming::{disambiguated_tool_name, public_tool_name};
use crate::small_map::SmallMap;
use mimo_proto::v1::{Tool, WatchEvent, WatchEventType};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

/// Why a skill leaves the catalogue, as watchers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    /// Unregistered, or its lease revoked.
    Removed,
    /// Its lease expired.
    Expired,
}

/// A (skill, tool) pair by original names.
type Pair = (String, String);

/// One skill as one host registered it.
#[derive(Debug)]
struct SkillEntry {
    endpoint: Arc<str>,
    /// Its tools, sorted by name.
    tools: Vec<Arc<Tool>>,
    /// Indexes into `tools` in the order the skill listed them.
    listed: Vec<u32>,
}

impl SkillEntry {
    fn tool(&self, name: &str) -> Option<&Arc<Tool>> {
        self.tools
            .binary_search_by(|tool| tool.name.as_str().cmp(name))
            .ok()
            .map(|at| &self.tools[at])
    }

    fn listed(&self) -> impl Iterator<Item = &Arc<Tool>> {
        self.listed.iter().map(|&at| &self.tools[at as usize])
    }
}

/// One provider of a public tool name.
#[derive(Debug, Clone)]
pub(crate) struct ToolProvider {
    pub(crate) skill: Arc<str>,
    pub(crate) tool: Arc<Tool>,
    pub(crate) endpoint: Arc<str>,
    /// The lease the skill is registered under here.
    pub(crate) lease: u64,
}

/// One registered skill, as listed.
#[derive(Debug)]
pub(crate) struct Registration<'a> {
    pub(crate) lease: u64,
    pub(crate) skill: &'a str,
    pub(crate) endpoint: &'a str,
    pub(crate) tools: usize,
}

/// Where a listing resumes: after this (skill, tool).
pub(crate) type ListPosition = (String, String);

/// Skills and tools; every change keeps the indexes consistent.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// skill → lease → registration.
    skills: BTreeMap<Arc<str>, SmallMap<u64, SkillEntry>>,
    skills_by_lease: HashMap<u64, SmallMap<Arc<str>, ()>>,
    /// Public names that are not plain, both ways.
    hashed: BTreeMap<String, Pair>,
    hashed_of: HashMap<Pair, String>,
    /// For each plain name claimed by more than one pair: the claimants that do not hold it.
    /// The smallest claimant holds the plain name and the others get hashed names, so that
    /// names depend on what is registered, never on the order it was registered in.
    losers: BTreeMap<String, SmallMap<Pair, ()>>,
    /// Tool descriptions shared by every registration that has the same one.
    pool: HashSet<PooledTool>,
    skill_count: usize,
    tool_count: usize,
    /// Events of the change under way, taken by [`Catalog::take_events`].
    events: Vec<WatchEvent>,
}

impl Catalog {
    /// Number of registered skills (a skill served by two hosts counts twice).
    pub(crate) fn skill_count(&self) -> usize {
        self.skill_count
    }

    /// Number of registered tools (counted per registering skill).
    pub(crate) fn tool_count(&self) -> usize {
        self.tool_count
    }

    fn entry_of(&self, lease: u64, skill: &str) -> Option<&SkillEntry> {
        self.skills.get(skill)?.get(&lease)
    }

    /// Whether the skill is registered under the lease.
    pub(crate) fn has_skill(&self, lease: u64, skill: &str) -> bool {
        self.entry_of(lease, skill).is_some()
    }

    /// Public names of the skill's tools under the lease, in the order it listed them.
    pub(crate) fn names_of(&self, lease: u64, skill: &str) -> Vec<String> {
        self.entry_of(lease, skill)
            .map(|entry| {
                entry
                    .listed()
                    .map(|tool| self.name_of(&(skill.to_string(), tool.name.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// (endpoint, tools in their order) of a registered skill.
    pub(crate) fn entry(&self, lease: u64, skill: &str) -> Option<(String, Vec<Tool>)> {
        self.entry_of(lease, skill).map(|entry| {
            (
                entry.endpoint.to_string(),
                entry.listed().map(|tool| (**tool).clone()).collect(),
            )
        })
    }

    /// Names of the skills registered under the lease.
    pub(crate) fn skills_of(&self, lease: u64) -> Vec<String> {
        self.skills_by_lease
            .get(&lease)
            .map(|skills| skills.iter().map(|(skill, ())| skill.to_string()).collect())
            .unwrap_or_default()
    }

    /// Tools the skill now has under the lease, which a replacement would release.
    pub(crate) fn tools_of(&self, lease: u64, skill: &str) -> usize {
        self.entry_of(lease, skill)
            .map_or(0, |entry| entry.tools.len())
    }

    /// Every registration, by skill then lease.
    pub(crate) fn registrations(&self) -> impl Iterator<Item = Registration<'_>> {
        self.skills.iter().flat_map(|(skill, by_lease)| {
            by_lease.iter().map(move |(lease, entry)| Registration {
                lease: *lease,
                skill: skill.as_ref(),
                endpoint: &entry.endpoint,
                tools: entry.tools.len(),
            })
        })
    }

    /// Replaces the skill's whole catalogue under the lease; returns the public names given.
    pub(crate) fn register(
        &mut self,
        lease: u64,
        skill: &str,
        endpoint: &str,
        tools: Vec<Tool>,
    ) -> Vec<String> {
        let previous = self.detach(lease, skill);
        let new_names: HashSet<&str> = tools.iter().map(|tool| tool.name.as_str()).collect();
        let kept: HashSet<String> = previous
            .as_ref()
            .map(|entry| {
                entry
                    .tools
                    .iter()
                    .filter(|tool| new_names.contains(tool.name.as_str()))
                    .map(|tool| tool.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        // First what leaves (named as they were), then names given back, then what comes.
        let kind = if previous.is_some() {
            WatchEventType::SkillUpdated
        } else {
            WatchEventType::SkillAdded
        };
        self.record(kind, lease, skill, endpoint, "", None);
        if let Some(previous) = &previous {
            for tool in previous.listed() {
                if !kept.contains(&tool.name) {
                    let name = self.name_of(&(skill.to_string(), tool.name.clone()));
                    self.record(
                        WatchEventType::ToolRemoved,
                        lease,
                        skill,
                        &previous.endpoint,
                        &name,
                        None,
                    );
                }
            }
            for tool in &previous.tools {
                if !kept.contains(&tool.name) {
                    self.give_back(&(skill.to_string(), tool.name.clone()));
                }
            }
        }
        // Names for pairs registered nowhere else yet.
        for tool in &tools {
            let pair = (skill.to_string(), tool.name.clone());
            if !kept.contains(&tool.name) && self.registrations_of(&pair) == 0 {
                self.take_name(&pair);
            }
        }
        let mut shared: Vec<Arc<Tool>> = tools.into_iter().map(|tool| self.intern(tool)).collect();
        let listed_names: Vec<String> = shared.iter().map(|tool| tool.name.clone()).collect();
        shared.sort_by(|a, b| a.name.cmp(&b.name));
        shared.dedup_by(|a, b| a.name == b.name);
        // Collected in place, the vector still holds the request's buffer of whole tools.
        shared.shrink_to_fit();
        let listed = listed_names
            .iter()
            .filter_map(|name| {
                shared
                    .binary_search_by(|tool| tool.name.as_str().cmp(name))
                    .ok()
                    .map(|at| at as u32)
            })
            .collect();
        let mut listed: Vec<u32> = listed;
        listed.shrink_to_fit();
        let entry = SkillEntry {
            endpoint: Arc::from(endpoint),
            tools: shared,
            listed,
        };
        let skill_key = self.skill_key(skill);
        self.tool_count += entry.tools.len();
        self.skill_count += 1;
        let arrivals: Vec<(String, Arc<Tool>, bool)> = entry
            .listed()
            .map(|tool| {
                let unchanged = previous.as_ref().is_some_and(|p| {
                    p.endpoint == entry.endpoint
                        && p.tool(&tool.name).is_some_and(|old| **old == **tool)
                });
                (tool.name.clone(), tool.clone(), unchanged)
            })
            .collect();
        let had = |name: &str| previous.as_ref().is_some_and(|p| p.tool(name).is_some());
        let had: Vec<bool> = arrivals.iter().map(|(name, _, _)| had(name)).collect();
        self.skills
            .entry(skill_key.clone())
            .or_default()
            .insert(lease, entry);
        self.skills_by_lease
            .entry(lease)
            .or_default()
            .insert(skill_key, ());
        for ((tool_name, tool, unchanged), had) in arrivals.into_iter().zip(had) {
            if unchanged {
                continue;
            }
            let name = self.name_of(&(skill.to_string(), tool_name));
            let kind = if had {
                WatchEventType::ToolUpdated
            } else {
                WatchEventType::ToolAdded
            };
            self.record(kind, lease, skill, endpoint, &name, Some(&tool));
        }
        if let Some(previous) = previous {
            for tool in &previous.tools {
                self.unpool(tool);
            }
        }
        self.names_of(lease, skill)
    }

    /// Removes every skill attached to the lease; returns how many there were.
    pub(crate) fn remove_lease(&mut self, lease: u64, why: Departure) -> usize {
        let skills = self.skills_by_lease.get(&lease).map(|skills| {
            skills
                .iter()
                .map(|(skill, ())| skill.to_string())
                .collect::<Vec<_>>()
        });
        let skills = skills.unwrap_or_default();
        for skill in &skills {
            self.remove_skill(lease, skill, why);
        }
        skills.len()
    }

    /// Removes one skill from the lease; returns how many tools went with it.
    pub(crate) fn remove_skill(&mut self, lease: u64, skill: &str, why: Departure) -> usize {
        let Some(entry) = self.detach(lease, skill) else {
            return 0;
        };
        let kind = match why {
            Departure::Removed => WatchEventType::SkillRemoved,
            Departure::Expired => WatchEventType::SkillExpired,
        };
        self.record(kind, lease, skill, &entry.endpoint, "", None);
        for tool in entry.listed() {
            let name = self.name_of(&(skill.to_string(), tool.name.clone()));
            self.record(
                WatchEventType::ToolRemoved,
                lease,
                skill,
                &entry.endpoint,
                &name,
                None,
            );
        }
        for tool in &entry.tools {
            self.give_back(&(skill.to_string(), tool.name.clone()));
        }
        for tool in &entry.tools {
            self.unpool(tool);
        }
        entry.tools.len()
    }

    /// The events of the changes made since the last call, in order.
    pub(crate) fn take_events(&mut self) -> Vec<WatchEvent> {
        std::mem::take(&mut self.events)
    }

    /// Providers of the public tool name, by lease.
    pub(crate) fn providers(&self, public_name: &str) -> Vec<ToolProvider> {
        match self.pair_named(public_name) {
            Some(pair) => self.providers_of(&pair),
            None => Vec::new(),
        }
    }

    /// Public tools in (skill, tool) order, after `after` when given, whose public names
    /// start with `prefix`, of `skill` only when it is non-empty: (public name, providers).
    pub(crate) fn listing<'a>(
        &'a self,
        skill: &'a str,
        prefix: &'a str,
        after: Option<ListPosition>,
    ) -> impl Iterator<Item = (String, Vec<ToolProvider>)> + 'a {
        let after_skill = after.as_ref().map(|(skill, _)| skill.clone());
        self.candidate_skills(skill, prefix, after_skill.as_deref())
            .flat_map(move |candidate| {
                let names: BTreeSet<String> = self
                    .skills
                    .get(candidate.as_str())
                    .map(|by_lease| {
                        by_lease
                            .values()
                            .flat_map(|entry| entry.tools.iter().map(|tool| tool.name.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let after = after.clone();
                names.into_iter().filter_map(move |tool| {
                    if let Some((after_skill, after_tool)) = &after {
                        if *after_skill == candidate && tool <= *after_tool {
                            return None;
                        }
                    }
                    let pair = (candidate.clone(), tool);
                    let name = self.name_of(&pair);
                    name.starts_with(prefix)
                        .then(|| (name, self.providers_of(&pair)))
                })
            })
    }

    /// Skills that may have a public name starting with `prefix`, sorted, from `after` on.
    fn candidate_skills<'a>(
        &'a self,
        only: &'a str,
        prefix: &'a str,
        after: Option<&str>,
    ) -> Box<dyn Iterator<Item = String> + 'a> {
        let from = after.unwrap_or("").to_string();
        if !only.is_empty() {
            let wanted = self.skills.contains_key(only) && only >= from.as_str();
            return Box::new(wanted.then(|| only.to_string()).into_iter());
        }
        // Plain names: the skill starts with the prefix, or is the part of it before a `_`.
        let mut extra: BTreeSet<String> = prefix
            .match_indices('_')
            .map(|(at, _)| &prefix[..at])
            .filter(|skill| self.skills.contains_key(*skill))
            .map(str::to_string)
            .collect();
        // Hashed names start with a sanitised skill name, which may sort anywhere.
        extra.extend(
            self.hashed
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(name, _)| name.starts_with(prefix))
                .map(|(_, pair)| pair.0.clone()),
        );
        extra.retain(|skill| *skill >= from);
        let start = std::cmp::max(prefix.to_string(), from);
        let range = self
            .skills
            .range::<str, _>((Bound::Included(start.as_str()), Bound::Unbounded))
            .map(|(skill, _)| skill.to_string())
            .take_while(move |skill| skill.starts_with(prefix));
        Box::new(merge_sorted(extra.into_iter(), range))
    }

    fn providers_of(&self, pair: &Pair) -> Vec<ToolProvider> {
        let Some((skill, by_lease)) = self.skills.get_key_value(pair.0.as_str()) else {
            return Vec::new();
        };
        by_lease
            .iter()
            .filter_map(|(lease, entry)| {
                entry.tool(&pair.1).map(|tool| ToolProvider {
                    skill: skill.clone(),
                    tool: tool.clone(),
                    endpoint: entry.endpoint.clone(),
                    lease: *lease,
                })
            })
            .collect()
    }

    /// How many registrations have the pair.
    fn registrations_of(&self, pair: &Pair) -> usize {
        self.skills.get(pair.0.as_str()).map_or(0, |by_lease| {
            by_lease
                .values()
                .filter(|entry| entry.tool(&pair.1).is_some())
                .count()
        })
    }

    /// The pair a public name belongs to now.
    fn pair_named(&self, name: &str) -> Option<Pair> {
        if let Some(pair) = self.hashed.get(name) {
            return Some(pair.clone());
        }
        self.holder(name)
    }

    /// The pair's public name now.
    fn name_of(&self, pair: &Pair) -> String {
        match self.hashed_of.get(pair) {
            Some(name) => name.clone(),
            None => format!("{}_{}", pair.0, pair.1),
        }
    }

    /// The registered pair holding `plain` as its plain name, if any: found by splitting the
    /// name at each `_` into a skill and a tool.
    fn holder(&self, plain: &str) -> Option<Pair> {
        plain.match_indices('_').find_map(|(at, _)| {
            let pair = (plain[..at].to_string(), plain[at + 1..].to_string());
            (self.registrations_of(&pair) > 0
                && !self.hashed_of.contains_key(&pair)
                && plain_name(&pair).as_deref() == Some(plain))
            .then_some(pair)
        })
    }

    /// Names a pair registered for the first time: its plain name if valid and no smaller
    /// pair claims it (taking it over from a larger holder, which moves to a hashed name),
    /// else a hashed name.
    fn take_name(&mut self, pair: &Pair) {
        let Some(plain) = plain_name(pair) else {
            let hashed = self.unused_variant(pair, disambiguated_tool_name(&pair.0, &pair.1));
            self.set_hashed(pair, hashed);
            return;
        };
        match self.holder(&plain) {
            None if self.hashed.contains_key(&plain) => self.lose(pair, plain),
            None => {}
            Some(holder) if holder == *pair => {}
            Some(holder) if *pair < holder => {
                let hashed =
                    self.unused_variant(&holder, disambiguated_tool_name(&holder.0, &holder.1));
                self.rename(&holder, &plain, &hashed);
                self.set_hashed(&holder, hashed);
                self.losers.entry(plain).or_default().insert(holder, ());
            }
            Some(_) => self.lose(pair, plain),
        }
    }

    /// Makes `pair` a claimant of `plain` that does not hold it.
    fn lose(&mut self, pair: &Pair, plain: String) {
        let hashed = self.unused_variant(pair, disambiguated_tool_name(&pair.0, &pair.1));
        self.set_hashed(pair, hashed);
        self.losers
            .entry(plain)
            .or_default()
            .insert(pair.clone(), ());
    }

    /// After a registration of `pair` went: when it was the last, its name is given back, and
    /// a plain name it held goes to the smallest other claimant.
    fn give_back(&mut self, pair: &Pair) {
        if self.registrations_of(pair) > 0 {
            return;
        }
        let plain = plain_name(pair);
        if let Some(hashed) = self.hashed_of.remove(pair) {
            self.hashed.remove(&hashed);
            if let Some(plain) = &plain {
                if let Some(losers) = self.losers.get_mut(plain) {
                    losers.remove(pair);
                    if losers.is_empty() {
                        self.losers.remove(plain);
                    }
                }
            }
            return;
        }
        let Some(plain) = plain else { return };
        let Some(losers) = self.losers.get_mut(&plain) else {
            return;
        };
        let Some(next) = losers.first_key().cloned() else {
            return;
        };
        losers.remove(&next);
        if losers.is_empty() {
            self.losers.remove(&plain);
        }
        if let Some(hashed) = self.hashed_of.remove(&next) {
            self.hashed.remove(&hashed);
            self.rename(&next, &hashed, &plain);
        }
    }

    fn set_hashed(&mut self, pair: &Pair, name: String) {
        self.hashed.insert(name.clone(), pair.clone());
        self.hashed_of.insert(pair.clone(), name);
    }

    /// Whether `name` is unused, or used by `pair` itself.
    fn free_for(&self, pair: &Pair, name: &str) -> bool {
        self.pair_named(name).is_none_or(|user| user == *pair)
    }

    /// `name`, unless another pair uses it (a name crafted to equal this pair's hash): then a
    /// further hashed variant that is free.
    fn unused_variant(&self, pair: &Pair, name: String) -> String {
        if self.free_for(pair, &name) {
            return name;
        }
        (2..=9)
            .map(|n| disambiguated_tool_name(&pair.0, &format!("{}\u{0}{n}", pair.1)))
            .find(|variant| self.free_for(pair, variant))
            .unwrap_or(name)
    }

    /// Records that every registration of `pair` moved from public name `from` to `to`.
    fn rename(&mut self, pair: &Pair, from: &str, to: &str) {
        for provider in self.providers_of(pair) {
            let (skill, endpoint, tool) = (provider.skill, provider.endpoint, provider.tool);
            self.record(
                WatchEventType::ToolRemoved,
                provider.lease,
                &skill,
                &endpoint,
                from,
                None,
            );
            self.record(
                WatchEventType::ToolAdded,
                provider.lease,
                &skill,
                &endpoint,
                to,
                Some(&tool),
            );
        }
    }

    /// Takes the registration out of the skill and lease indexes; returns it.
    fn detach(&mut self, lease: u64, skill: &str) -> Option<SkillEntry> {
        let by_lease = self.skills.get_mut(skill)?;
        let entry = by_lease.remove(&lease)?;
        if by_lease.is_empty() {
            self.skills.remove(skill);
        }
        if let Some(skills) = self.skills_by_lease.get_mut(&lease) {
            skills.remove(&Arc::from(skill));
            if skills.is_empty() {
                self.skills_by_lease.remove(&lease);
            }
        }
        self.tool_count -= entry.tools.len();
        self.skill_count -= 1;
        Some(entry)
    }

    /// The skill's name as shared by its registrations.
    fn skill_key(&self, skill: &str) -> Arc<str> {
        self.skills
            .get_key_value(skill)
            .map_or_else(|| Arc::from(skill), |(key, _)| key.clone())
    }

    fn record(
        &mut self,
        kind: WatchEventType,
        lease: u64,
        skill: &str,
        endpoint: &str,
        tool_name: &str,
        tool: Option<&Tool>,
    ) {
        self.events.push(WatchEvent {
            r#type: kind as i32,
            skill: skill.to_string(),
            lease_id: lease,
            endpoint: endpoint.to_string(),
            tool_name: tool_name.to_string(),
            tool: tool.cloned(),
        });
    }

    /// The shared copy of a tool description.
    fn intern(&mut self, tool: Tool) -> Arc<Tool> {
        let pooled = PooledTool(Arc::new(tool));
        if let Some(existing) = self.pool.get(&pooled) {
            return existing.0.clone();
        }
        let shared = pooled.0.clone();
        self.pool.insert(pooled);
        shared
    }

    /// Drops a description from the pool when `tool` (about to be dropped) is its last user.
    fn unpool(&mut self, tool: &Arc<Tool>) {
        if Arc::strong_count(tool) == 2 {
            self.pool.remove(&PooledTool(tool.clone()));
        }
    }
}

/// A tool description compared and hashed by content, for the pool.
#[derive(Debug)]
struct PooledTool(Arc<Tool>);

impl PartialEq for PooledTool {
    fn eq(&self, other: &Self) -> bool {
        *self.0 == *other.0
    }
}

impl Eq for PooledTool {}

impl std::hash::Hash for PooledTool {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let tool = &*self.0;
        (
            &tool.name,
            &tool.description,
            &tool.input_schema_json,
            &tool.title,
        )
            .hash(state);
    }
}

/// The pair's plain public name, when `<skill>_<tool>` is valid as it stands.
fn plain_name(pair: &Pair) -> Option<String> {
    let name = public_tool_name(&pair.0, &pair.1);
    (name == format!("{}_{}", pair.0, pair.1)).then_some(name)
}

/// Merges two sorted iterators into one, each value once.
fn merge_sorted<T: Ord>(
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
) -> impl Iterator<Item = T> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x == y => {
            b.next();
            a.next()
        }
        (Some(x), Some(y)) if x < y => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> Tool {
        Tool {
            name: name.into(),
            input_schema_json: "{}".into(),
            ..Tool::default()
        }
    }

    /// Every public name with the (skill, tool) it routes to, sorted.
    fn routes(catalog: &Catalog) -> Vec<(String, String, String)> {
        let mut routes: Vec<_> = catalog
            .listing("", "", None)
            .flat_map(|(name, providers)| {
                providers
                    .into_iter()
                    .map(|p| (name.clone(), p.skill.to_string(), p.tool.name.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        routes.sort();
        routes
    }

    #[test]
    fn colliding_names_do_not_depend_on_registration_order() {
        // "a_b" + "c" and "a" + "b_c" both make "a_b_c".
        let mut first = Catalog::default();
        first.register(1, "a_b", "h:1", vec![tool("c")]);
        first.register(2, "a", "h:2", vec![tool("b_c")]);
        let mut second = Catalog::default();
        second.register(2, "a", "h:2", vec![tool("b_c")]);
        second.register(1, "a_b", "h:1", vec![tool("c")]);
        assert_eq!(routes(&first), routes(&second));
        let names = routes(&first);
        assert_eq!(names.len(), 2, "both stay reachable: {names:?}");
        assert!(
            names.contains(&("a_b_c".into(), "a".into(), "b_c".into())),
            "{names:?}"
        );
        assert!(names.iter().all(|(name, _, _)| name.len() <= 64));
    }

    #[test]
    fn the_plain_name_returns_when_the_collision_goes() {
        let mut catalog = Catalog::default();
        catalog.register(1, "a_b", "h:1", vec![tool("c")]);
        catalog.register(2, "a", "h:2", vec![tool("b_c")]);
        catalog.take_events();
        catalog.remove_skill(2, "a", Departure::Removed);
        assert_eq!(
            routes(&catalog),
            [("a_b_c".into(), "a_b".into(), "c".into())]
        );
        let events = catalog.take_events();
        assert!(
            events
                .iter()
                .any(|e| e.r#type() == WatchEventType::ToolAdded
                    && e.tool_name == "a_b_c"
                    && e.skill == "a_b"),
            "the rename is an event too: {events:?}"
        );
    }

    #[test]
    fn three_claimants_in_any_order_end_alike_and_removal_leaves_nothing_behind() {
        // All three make "a_b_c_d".
        let regs = [(1, "a", "b_c_d"), (2, "a_b", "c_d"), (3, "a_b_c", "d")];
        let orders = [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]];
        let mut outcomes = Vec::new();
        for order in orders {
            let mut catalog = Catalog::default();
            for index in order {
                let (lease, skill, name) = regs[index];
                catalog.register(lease, skill, "h:1", vec![tool(name), tool("same")]);
            }
            // The same skill on a second host, and a re-registration, change nothing.
            catalog.register(9, "a_b", "h:2", vec![tool("c_d"), tool("same")]);
            catalog.register(2, "a_b", "h:1", vec![tool("c_d"), tool("same")]);
            outcomes.push(routes(&catalog));
            for (lease, skill, _) in regs {
                catalog.remove_skill(lease, skill, Departure::Removed);
            }
            catalog.remove_lease(9, Departure::Expired);
            assert!(catalog.hashed.is_empty() && catalog.skills.is_empty());
            assert!(catalog.losers.is_empty(), "{:?}", catalog.losers);
            assert!(
                catalog.pool.is_empty(),
                "shared tools are freed with their last user"
            );
            assert_eq!(catalog.tool_count, 0);
        }
        assert!(
            outcomes.windows(2).all(|pair| pair[0] == pair[1]),
            "{outcomes:#?}"
        );
        assert!(outcomes[0].contains(&("a_b_c_d".into(), "a".into(), "b_c_d".into())));
    }

    #[test]
    fn a_plain_name_crafted_to_equal_a_hash_never_shares_it() {
        let mut catalog = Catalog::default();
        // "b.c" is not a valid name part, so the pair gets a hashed name...
        catalog.register(1, "hx", "h:1", vec![tool("b.c")]);
        let hashed = routes(&catalog)[0].0.clone();
        let (skill, tool_part) = hashed.rsplit_once('_').unwrap();
        // ...and another skill's plain name is crafted to be that very string.
        catalog.register(2, skill, "h:2", vec![tool(tool_part)]);
        let names = routes(&catalog);
        assert_eq!(names.len(), 2, "{names:?}");
        assert_ne!(names[0].0, names[1].0, "{names:?}");
        for (lease, skill) in [(1, "hx"), (2, skill)] {
            catalog.remove_skill(lease, skill, Departure::Removed);
        }
        assert!(
            catalog.skills.is_empty() && catalog.losers.is_empty() && catalog.hashed_of.is_empty()
        );
    }

    /// Replays events into a map from public name to the skill serving it.
    fn replay(events: &[WatchEvent], view: &mut BTreeMap<String, String>) {
        for event in events {
            match event.r#type() {
                WatchEventType::ToolAdded | WatchEventType::ToolUpdated => {
                    view.insert(event.tool_name.clone(), event.skill.clone());
                }
                WatchEventType::ToolRemoved => {
                    view.remove(&event.tool_name);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn events_replayed_in_order_give_the_listed_names() {
        let mut catalog = Catalog::default();
        let mut view = BTreeMap::new();
        let steps: [&dyn Fn(&mut Catalog); 4] = [
            &|c| {
                c.register(1, "a_b", "h:1", vec![tool("c")]);
            },
            &|c| {
                c.register(2, "a", "h:2", vec![tool("b_c")]);
            },
            &|c| {
                c.register(2, "a", "h:2", vec![tool("other")]);
            },
            &|c| {
                c.remove_skill(1, "a_b", Departure::Removed);
            },
        ];
        for step in steps {
            step(&mut catalog);
            replay(&catalog.take_events(), &mut view);
            let listed: BTreeMap<String, String> = routes(&catalog)
                .into_iter()
                .map(|(name, skill, _)| (name, skill))
                .collect();
            assert_eq!(view, listed);
        }
    }

    #[test]
    fn the_same_skill_on_two_hosts_shares_one_name() {
        let mut catalog = Catalog::default();
        catalog.register(1, "time", "h:1", vec![tool("now")]);
        catalog.register(2, "time", "h:2", vec![tool("now")]);
        assert_eq!(catalog.providers("time_now").len(), 2);
    }

    #[test]
    fn random_catalogues_list_resolve_and_page_like_a_brute_force_model() {
        // Skill and tool names built from pieces that collide when joined with `_`, with
        // some invalid characters.
        let skills = ["a", "a_b", "a_b_c", "b", "x.y", "long_skill_name"];
        let tools = ["b", "c", "b_c", "c_d", "d", "t.1", "z"];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        for _round in 0..200 {
            let mut catalog = Catalog::default();
            for _step in 0..12 {
                let lease = 1 + next(3) as u64;
                let skill = skills[next(skills.len())];
                if next(4) == 0 {
                    catalog.remove_skill(lease, skill, Departure::Removed);
                    continue;
                }
                let picked: Vec<Tool> = tools
                    .iter()
                    .filter(|_| next(2) == 0)
                    .map(|name| tool(name))
                    .collect();
                catalog.register(lease, skill, "h:1", picked);
            }
            // Brute force: every registered pair, with the name the catalogue gives it.
            let mut pairs: Vec<(String, String)> = catalog
                .skills
                .iter()
                .flat_map(|(skill, by_lease)| {
                    by_lease.values().flat_map(move |entry| {
                        entry
                            .tools
                            .iter()
                            .map(move |t| (skill.to_string(), t.name.clone()))
                    })
                })
                .collect();
            pairs.sort();
            pairs.dedup();
            let named: Vec<(String, (String, String))> = pairs
                .iter()
                .map(|pair| (catalog.name_of(pair), pair.clone()))
                .collect();
            let unique: HashSet<&String> = named.iter().map(|(name, _)| name).collect();
            assert_eq!(unique.len(), named.len(), "one name per pair: {named:?}");
            for (name, pair) in &named {
                assert!(crate::naming::MAX_PUBLIC_NAME_LEN >= name.len());
                let providers = catalog.providers(name);
                assert!(!providers.is_empty(), "{name} resolves");
                assert!(providers
                    .iter()
                    .all(|p| *p.skill == *pair.0 && p.tool.name == pair.1));
            }
            for prefix in ["", "a", "a_", "a_b", "a_b_c", "x", "l", "zz"] {
                let expected: Vec<&String> = named
                    .iter()
                    .filter(|(name, _)| name.starts_with(prefix))
                    .map(|(name, _)| name)
                    .collect();
                let listed: Vec<String> = catalog
                    .listing("", prefix, None)
                    .map(|(name, _)| name)
                    .collect();
                assert_eq!(
                    listed.iter().collect::<Vec<_>>(),
                    expected,
                    "prefix {prefix:?}"
                );
                // Paging one at a time from each listed position gives the rest.
                let mut paged = Vec::new();
                let mut after = None;
                loop {
                    let next_one = catalog.listing("", prefix, after.clone()).next();
                    let Some((name, providers)) = next_one else {
                        break;
                    };
                    after = Some((
                        providers[0].skill.to_string(),
                        providers[0].tool.name.clone(),
                    ));
                    paged.push(name);
                }
                assert_eq!(paged, listed, "paged, prefix {prefix:?}");
            }
        }
    }
}
