//! The catalogue of registered skills and their tools, indexed by public tool name.

use crate::naming::{disambiguated_tool_name, public_tool_name};
use mimo_proto::v1::{Tool, WatchEvent, WatchEventType};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Why a skill leaves the catalogue, as watchers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    /// Unregistered, or its lease revoked.
    Removed,
    /// Its lease expired.
    Expired,
}

/// Who registered a skill: the lease and the skill's name.
type SkillKey = (u64, String);

/// One skill as a host registered it.
#[derive(Debug, Clone)]
pub(crate) struct SkillEntry {
    pub(crate) endpoint: String,
    /// (public name, tool) pairs, in the order the skill listed them.
    pub(crate) tools: Vec<(String, Tool)>,
}

/// One provider of a public tool name.
#[derive(Debug, Clone)]
pub(crate) struct ToolProvider {
    pub(crate) skill: String,
    pub(crate) tool: Tool,
    pub(crate) endpoint: String,
    /// The lease the skill is registered under here.
    pub(crate) lease: u64,
}

/// Skills and tools; every change keeps the indexes consistent.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    skills: BTreeMap<SkillKey, SkillEntry>,
    skills_by_lease: HashMap<u64, BTreeSet<String>>,
    tools: BTreeMap<String, BTreeMap<SkillKey, ToolProvider>>,
    tool_count: usize,
    /// For each valid plain name `<skill>_<tool>`, the (skill, tool) pairs that would have
    /// it, with how many registrations each has. The smallest pair holds the plain name and
    /// the others get hashed names, so that names depend on what is registered, never on
    /// the order it was registered in.
    claims: BTreeMap<String, BTreeMap<Pair, usize>>,
    /// Events of the change under way, taken by [`Catalog::take_events`].
    events: Vec<WatchEvent>,
}

/// A (skill, tool) pair by original names.
type Pair = (String, String);

impl Catalog {
    /// Number of registered skills (a skill served by two hosts counts twice).
    pub(crate) fn skill_count(&self) -> usize {
        self.skills.len()
    }

    /// Number of registered tools (counted per registering skill).
    pub(crate) fn tool_count(&self) -> usize {
        self.tool_count
    }

    /// Whether the skill is registered under the lease.
    pub(crate) fn has_skill(&self, lease: u64, skill: &str) -> bool {
        self.skills.contains_key(&(lease, skill.to_string()))
    }

    /// Public names of the skill's tools under the lease, in the order it listed them.
    pub(crate) fn names_of(&self, lease: u64, skill: &str) -> Vec<String> {
        self.skills
            .get(&(lease, skill.to_string()))
            .map(|entry| entry.tools.iter().map(|(name, _)| name.clone()).collect())
            .unwrap_or_default()
    }

    /// (endpoint, tools in their order) of a registered skill.
    pub(crate) fn entry(&self, lease: u64, skill: &str) -> Option<(String, Vec<Tool>)> {
        self.skills.get(&(lease, skill.to_string())).map(|entry| {
            (
                entry.endpoint.clone(),
                entry.tools.iter().map(|(_, tool)| tool.clone()).collect(),
            )
        })
    }

    /// Names of the skills registered under the lease.
    pub(crate) fn skills_of(&self, lease: u64) -> Vec<String> {
        self.skills_by_lease
            .get(&lease)
            .map(|skills| skills.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Tools the skill now has under the lease, which a replacement would release.
    pub(crate) fn tools_of(&self, lease: u64, skill: &str) -> usize {
        self.skills
            .get(&(lease, skill.to_string()))
            .map_or(0, |entry| entry.tools.len())
    }

    /// Replaces the skill's whole catalogue under the lease; returns the public names given.
    pub(crate) fn register(
        &mut self,
        lease: u64,
        skill: &str,
        endpoint: &str,
        tools: Vec<Tool>,
    ) -> Vec<String> {
        let key: SkillKey = (lease, skill.to_string());
        let old_pairs: Vec<Pair> = self
            .skills
            .get(&key)
            .map(|entry| pairs_of(skill, entry.tools.iter().map(|(_, tool)| tool)))
            .unwrap_or_default();
        let new_pairs = pairs_of(skill, tools.iter());
        let holders = self.holders(old_pairs.iter().chain(&new_pairs));
        let previous = self.detach_skill(&key);
        for pair in &new_pairs {
            self.claim(pair);
        }
        self.reassign(holders);
        let mut entry = SkillEntry {
            endpoint: endpoint.to_string(),
            tools: Vec::with_capacity(tools.len()),
        };
        for tool in tools {
            let name = self.public_name(skill, &tool.name);
            self.tools.entry(name.clone()).or_default().insert(
                key.clone(),
                ToolProvider {
                    skill: skill.to_string(),
                    tool: tool.clone(),
                    endpoint: endpoint.to_string(),
                    lease,
                },
            );
            entry.tools.push((name, tool));
        }
        self.tool_count += entry.tools.len();
        let names = entry.tools.iter().map(|(name, _)| name.clone()).collect();
        self.record_registration(&key, previous.as_ref(), &entry);
        self.skills.insert(key, entry);
        self.skills_by_lease
            .entry(lease)
            .or_default()
            .insert(skill.to_string());
        names
    }

    /// Removes every skill attached to the lease; returns how many there were.
    pub(crate) fn remove_lease(&mut self, lease: u64, why: Departure) -> usize {
        let skills = self.skills_by_lease.remove(&lease).unwrap_or_default();
        for skill in &skills {
            self.remove_skill(lease, skill, why);
        }
        skills.len()
    }

    /// Removes one skill from the lease; returns how many tools went with it.
    pub(crate) fn remove_skill(&mut self, lease: u64, skill: &str, why: Departure) -> usize {
        let key: SkillKey = (lease, skill.to_string());
        let Some(pairs) = self
            .skills
            .get(&key)
            .map(|entry| pairs_of(skill, entry.tools.iter().map(|(_, tool)| tool)))
        else {
            return 0;
        };
        let holders = self.holders(pairs.iter());
        let Some(entry) = self.detach_skill(&key) else {
            return 0;
        };
        self.reassign(holders);
        if let Some(skills) = self.skills_by_lease.get_mut(&lease) {
            skills.remove(skill);
            if skills.is_empty() {
                self.skills_by_lease.remove(&lease);
            }
        }
        let kind = match why {
            Departure::Removed => WatchEventType::SkillRemoved,
            Departure::Expired => WatchEventType::SkillExpired,
        };
        self.record(kind, &key, &entry.endpoint, "", None);
        for (name, _) in &entry.tools {
            self.record(
                WatchEventType::ToolRemoved,
                &key,
                &entry.endpoint,
                name,
                None,
            );
        }
        entry.tools.len()
    }

    /// The events of the changes made since the last call, in order.
    pub(crate) fn take_events(&mut self) -> Vec<WatchEvent> {
        std::mem::take(&mut self.events)
    }

    /// Takes the skill's entry out of every index (the lease index excepted).
    fn detach_skill(&mut self, key: &SkillKey) -> Option<SkillEntry> {
        let entry = self.skills.remove(key)?;
        self.tool_count -= entry.tools.len();
        for pair in pairs_of(&key.1, entry.tools.iter().map(|(_, tool)| tool)) {
            self.release(&pair);
        }
        for (name, _) in &entry.tools {
            if let Some(providers) = self.tools.get_mut(name) {
                providers.remove(key);
                if providers.is_empty() {
                    self.tools.remove(name);
                }
            }
        }
        Some(entry)
    }

    /// Records what a registration changed: the skill, then each tool added, updated or gone.
    fn record_registration(
        &mut self,
        key: &SkillKey,
        previous: Option<&SkillEntry>,
        entry: &SkillEntry,
    ) {
        let endpoint = &entry.endpoint;
        let before: BTreeMap<&str, &Tool> = previous
            .map(|p| p.tools.iter().map(|(n, t)| (n.as_str(), t)).collect())
            .unwrap_or_default();
        let kind = if previous.is_some() {
            WatchEventType::SkillUpdated
        } else {
            WatchEventType::SkillAdded
        };
        self.record(kind, key, endpoint, "", None);
        for (name, tool) in &entry.tools {
            match before.get(name.as_str()) {
                Some(old) if *old == tool && previous.is_some_and(|p| &p.endpoint == endpoint) => {}
                Some(_) => {
                    self.record(WatchEventType::ToolUpdated, key, endpoint, name, Some(tool))
                }
                None => self.record(WatchEventType::ToolAdded, key, endpoint, name, Some(tool)),
            }
        }
        let now: BTreeSet<&str> = entry.tools.iter().map(|(n, _)| n.as_str()).collect();
        for (name, _) in before {
            if !now.contains(name) {
                let endpoint = previous.map_or(endpoint, |p| &p.endpoint);
                self.record(WatchEventType::ToolRemoved, key, endpoint, name, None);
            }
        }
    }

    fn record(
        &mut self,
        kind: WatchEventType,
        key: &SkillKey,
        endpoint: &str,
        tool_name: &str,
        tool: Option<&Tool>,
    ) {
        self.events.push(WatchEvent {
            r#type: kind as i32,
            skill: key.1.clone(),
            lease_id: key.0,
            endpoint: endpoint.to_string(),
            tool_name: tool_name.to_string(),
            tool: tool.cloned(),
        });
    }

    /// Providers of the public tool name, in a stable order.
    pub(crate) fn providers(&self, public_name: &str) -> Vec<&ToolProvider> {
        self.tools
            .get(public_name)
            .map(|providers| providers.values().collect())
            .unwrap_or_default()
    }

    /// Public tool names after `after` (from the start when empty) and not before `from`,
    /// with their providers, sorted by name.
    pub(crate) fn tools_after(
        &self,
        after: &str,
        from: &str,
    ) -> impl Iterator<Item = (&String, Vec<&ToolProvider>)> {
        use std::ops::Bound;
        let start = if after.is_empty() || after < from {
            Bound::Included(from.to_string())
        } else {
            Bound::Excluded(after.to_string())
        };
        self.tools
            .range((start, Bound::Unbounded))
            .map(|(name, providers)| (name, providers.values().collect()))
    }

    /// Every registered skill with its lease, sorted by lease then name.
    pub(crate) fn skills(&self) -> impl Iterator<Item = (&SkillKey, &SkillEntry)> {
        self.skills.iter()
    }

    /// The public name of a pair now: its plain name if valid and it is the smallest pair
    /// claiming it, else a name ending in a stable hash of the pair.
    fn public_name(&self, skill: &str, tool: &str) -> String {
        let name = public_tool_name(skill, tool);
        let pair = (skill.to_string(), tool.to_string());
        match self.claims.get(&name).and_then(|pairs| pairs.keys().next()) {
            Some(holder) if *holder != pair => disambiguated_tool_name(skill, tool),
            _ => name,
        }
    }

    fn claim(&mut self, pair: &Pair) {
        if let Some(plain) = plain_name(pair) {
            *self
                .claims
                .entry(plain)
                .or_default()
                .entry(pair.clone())
                .or_default() += 1;
        }
    }

    fn release(&mut self, pair: &Pair) {
        let Some(plain) = plain_name(pair) else {
            return;
        };
        if let Some(pairs) = self.claims.get_mut(&plain) {
            if let Some(count) = pairs.get_mut(pair) {
                *count -= 1;
                if *count == 0 {
                    pairs.remove(pair);
                }
            }
            if pairs.is_empty() {
                self.claims.remove(&plain);
            }
        }
    }

    /// The holder of each plain name these pairs claim, before a change.
    fn holders<'p>(&self, pairs: impl Iterator<Item = &'p Pair>) -> BTreeMap<String, Option<Pair>> {
        pairs
            .filter_map(plain_name)
            .map(|plain| {
                let holder = self
                    .claims
                    .get(&plain)
                    .and_then(|pairs| pairs.keys().next().cloned());
                (plain, holder)
            })
            .collect()
    }

    /// After claims changed, moves each plain name whose holder changed: the old holder's
    /// registrations take their hashed name, the new holder's the plain one.
    fn reassign(&mut self, before: BTreeMap<String, Option<Pair>>) {
        for (plain, old_holder) in before {
            let new_holder = self
                .claims
                .get(&plain)
                .and_then(|pairs| pairs.keys().next().cloned());
            if new_holder == old_holder {
                continue;
            }
            if let Some(old) = old_holder {
                let hashed = disambiguated_tool_name(&old.0, &old.1);
                self.rename(&old, &plain, &hashed);
            }
            if let Some(new) = new_holder {
                let hashed = disambiguated_tool_name(&new.0, &new.1);
                self.rename(&new, &hashed, &plain);
            }
        }
    }

    /// Moves every registration of `pair` from public name `from` to `to`.
    fn rename(&mut self, pair: &Pair, from: &str, to: &str) {
        let Some(providers) = self.tools.get_mut(from) else {
            return;
        };
        let moving: Vec<SkillKey> = providers
            .iter()
            .filter(|(_, p)| p.skill == pair.0 && p.tool.name == pair.1)
            .map(|(key, _)| key.clone())
            .collect();
        let mut moved = Vec::new();
        for key in moving {
            if let Some(provider) = providers.remove(&key) {
                moved.push((key, provider));
            }
        }
        if providers.is_empty() {
            self.tools.remove(from);
        }
        for (key, provider) in moved {
            if let Some(entry) = self.skills.get_mut(&key) {
                for (name, tool) in &mut entry.tools {
                    if name == from && tool.name == pair.1 {
                        *name = to.to_string();
                    }
                }
            }
            let (endpoint, tool) = (provider.endpoint.clone(), provider.tool.clone());
            self.tools
                .entry(to.to_string())
                .or_default()
                .insert(key.clone(), provider);
            self.record(WatchEventType::ToolRemoved, &key, &endpoint, from, None);
            self.record(WatchEventType::ToolAdded, &key, &endpoint, to, Some(&tool));
        }
    }
}

/// The (skill, tool) pairs of a catalogue.
fn pairs_of<'t>(skill: &str, tools: impl Iterator<Item = &'t Tool>) -> Vec<Pair> {
    tools
        .map(|tool| (skill.to_string(), tool.name.clone()))
        .collect()
}

/// The pair's plain public name, when `<skill>_<tool>` is valid as it stands.
fn plain_name(pair: &Pair) -> Option<String> {
    let name = public_tool_name(&pair.0, &pair.1);
    (name == format!("{}_{}", pair.0, pair.1)).then_some(name)
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

    /// Every public name with the (skill, tool) it routes to.
    fn routes(catalog: &Catalog) -> Vec<(String, String, String)> {
        catalog
            .tools_after("", "")
            .flat_map(|(name, providers)| {
                providers
                    .into_iter()
                    .map(|p| (name.clone(), p.skill.clone(), p.tool.name.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
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
    fn the_same_skill_on_two_hosts_shares_one_name() {
        let mut catalog = Catalog::default();
        catalog.register(1, "time", "h:1", vec![tool("now")]);
        catalog.register(2, "time", "h:2", vec![tool("now")]);
        assert_eq!(catalog.providers("time_now").len(), 2);
    }
}
