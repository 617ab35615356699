//! The catalogue of registered skills and their tools, indexed by public tool name.

use crate::naming::{disambiguated_tool_name, public_tool_name};
use crate::small_map::SmallMap;
use mimo_proto::v1::{Tool, WatchEvent, WatchEventType};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

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
    pub(crate) tools: Vec<(String, Arc<Tool>)>,
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

/// Skills and tools; every change keeps the indexes consistent.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    skills: BTreeMap<SkillKey, SkillEntry>,
    skills_by_lease: HashMap<u64, SmallMap<String, ()>>,
    tools: BTreeMap<String, SmallMap<SkillKey, ToolProvider>>,
    tool_count: usize,
    /// For each valid plain name `<skill>_<tool>` claimed by more than one (skill, tool)
    /// pair: the pairs that do not hold it, with their registration counts. The smallest
    /// claiming pair holds the plain name and the others get hashed names, so that names
    /// depend on what is registered, never on the order it was registered in.
    losers: BTreeMap<String, SmallMap<Pair, usize>>,
    /// Tool descriptions shared by every registration that has the same one (many hosts
    /// serve the same skills).
    pool: HashSet<PooledTool>,
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
                entry
                    .tools
                    .iter()
                    .map(|(_, tool)| (**tool).clone())
                    .collect(),
            )
        })
    }

    /// Names of the skills registered under the lease.
    pub(crate) fn skills_of(&self, lease: u64) -> Vec<String> {
        self.skills_by_lease
            .get(&lease)
            .map(|skills| skills.iter().map(|(skill, ())| skill.clone()).collect())
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
        // Tools the skill keeps keep their names (and their hold on them) as they are.
        let new_names: HashSet<&str> = tools.iter().map(|tool| tool.name.as_str()).collect();
        let kept: HashMap<String, String> = self
            .skills
            .get(&key)
            .map(|entry| {
                entry
                    .tools
                    .iter()
                    .filter(|(_, tool)| new_names.contains(tool.name.as_str()))
                    .map(|(name, tool)| (tool.name.clone(), name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let (previous, returned) = match self.detach_skill(&key, &kept) {
            Some((entry, returned)) => (Some(entry), returned),
            None => (None, Vec::new()),
        };
        self.record_departures(&key, previous.as_ref(), endpoint, &kept);
        for (pair, name) in returned {
            self.give_back(&pair, &name);
        }
        let mut entry = SkillEntry {
            endpoint: endpoint.to_string(),
            tools: Vec::with_capacity(tools.len()),
        };
        let shared_skill: Arc<str> = Arc::from(skill);
        let shared_endpoint: Arc<str> = Arc::from(endpoint);
        for tool in tools {
            let name = match kept.get(&tool.name) {
                Some(name) => name.clone(),
                None => self.take_name(&(skill.to_string(), tool.name.clone())),
            };
            let tool = self.intern(tool);
            self.tools.entry(name.clone()).or_default().insert(
                key.clone(),
                ToolProvider {
                    skill: shared_skill.clone(),
                    tool: tool.clone(),
                    endpoint: shared_endpoint.clone(),
                    lease,
                },
            );
            entry.tools.push((name, tool));
        }
        self.tool_count += entry.tools.len();
        let names = entry.tools.iter().map(|(name, _)| name.clone()).collect();
        self.record_arrivals(&key, previous.as_ref(), &entry);
        self.skills.insert(key, entry);
        self.skills_by_lease
            .entry(lease)
            .or_default()
            .insert(skill.to_string(), ());
        names
    }

    /// Removes every skill attached to the lease; returns how many there were.
    pub(crate) fn remove_lease(&mut self, lease: u64, why: Departure) -> usize {
        let skills = self.skills_by_lease.remove(&lease).unwrap_or_default();
        for (skill, ()) in skills.iter() {
            self.remove_skill(lease, skill, why);
        }
        skills.len()
    }

    /// Removes one skill from the lease; returns how many tools went with it.
    pub(crate) fn remove_skill(&mut self, lease: u64, skill: &str, why: Departure) -> usize {
        let key: SkillKey = (lease, skill.to_string());
        let Some((entry, returned)) = self.detach_skill(&key, &HashMap::new()) else {
            return 0;
        };
        if let Some(skills) = self.skills_by_lease.get_mut(&lease) {
            skills.remove(&skill.to_string());
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
        for (pair, name) in returned {
            self.give_back(&pair, &name);
        }
        entry.tools.len()
    }

    /// The events of the changes made since the last call, in order.
    pub(crate) fn take_events(&mut self) -> Vec<WatchEvent> {
        std::mem::take(&mut self.events)
    }

    /// Takes the skill's entry out of every index (the lease index excepted). Returns it
    /// with the names its tools give back, except those of `kept` (tool name → public name),
    /// which the caller registers again under the same names at once. The caller gives the
    /// names back after recording the skill's own events, so that watchers hear of a name's
    /// old owner leaving before of its new owner arriving.
    fn detach_skill(
        &mut self,
        key: &SkillKey,
        kept: &HashMap<String, String>,
    ) -> Option<(SkillEntry, Vec<(Pair, String)>)> {
        let entry = self.skills.remove(key)?;
        self.tool_count -= entry.tools.len();
        let mut returned = Vec::new();
        for (name, tool) in &entry.tools {
            if let Some(providers) = self.tools.get_mut(name) {
                providers.remove(key);
                if providers.is_empty() {
                    self.tools.remove(name);
                }
            }
            if !kept.contains_key(&tool.name) {
                returned.push(((key.1.clone(), tool.name.clone()), name.clone()));
            }
            self.unpool(tool);
        }
        Some((entry, returned))
    }

    /// Records the first half of a registration's change: the skill, then each of its old
    /// tools that it no longer has.
    fn record_departures(
        &mut self,
        key: &SkillKey,
        previous: Option<&SkillEntry>,
        endpoint: &str,
        kept: &HashMap<String, String>,
    ) {
        let kind = if previous.is_some() {
            WatchEventType::SkillUpdated
        } else {
            WatchEventType::SkillAdded
        };
        self.record(kind, key, endpoint, "", None);
        if let Some(previous) = previous {
            for (name, tool) in &previous.tools {
                if !kept.contains_key(&tool.name) {
                    self.record(
                        WatchEventType::ToolRemoved,
                        key,
                        &previous.endpoint,
                        name,
                        None,
                    );
                }
            }
        }
    }

    /// Records the second half: each tool added, or changed (description, schema, host).
    fn record_arrivals(
        &mut self,
        key: &SkillKey,
        previous: Option<&SkillEntry>,
        entry: &SkillEntry,
    ) {
        let before: BTreeMap<&str, &Tool> = previous
            .map(|p| p.tools.iter().map(|(n, t)| (n.as_str(), &**t)).collect())
            .unwrap_or_default();
        let same_host = previous.is_some_and(|p| p.endpoint == entry.endpoint);
        for (name, tool) in &entry.tools {
            match before.get(name.as_str()) {
                Some(old) if *old == &**tool && same_host => {}
                Some(_) => self.record(
                    WatchEventType::ToolUpdated,
                    key,
                    &entry.endpoint,
                    name,
                    Some(tool),
                ),
                None => self.record(
                    WatchEventType::ToolAdded,
                    key,
                    &entry.endpoint,
                    name,
                    Some(tool),
                ),
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

    /// Names a new registration of `pair`: its plain name if valid and no smaller pair
    /// claims it (taking it over from a larger holder, which moves to its hashed name), else
    /// its hashed name.
    fn take_name(&mut self, pair: &Pair) -> String {
        let Some(plain) = plain_name(pair) else {
            return self.unused_variant(pair, disambiguated_tool_name(&pair.0, &pair.1));
        };
        match self.holder(&plain) {
            // Free, or used as another pair's hashed name (a crafted clash): this pair waits
            // among the claimants.
            None if !self.free_for(pair, &plain) => {
                *self
                    .losers
                    .entry(plain)
                    .or_default()
                    .entry_or_default(pair.clone()) += 1;
                self.unused_variant(pair, disambiguated_tool_name(&pair.0, &pair.1))
            }
            None => plain,
            Some(holder) if holder == *pair => plain,
            Some(holder) if *pair < holder => {
                let registrations = self.tools.get(&plain).map_or(0, SmallMap::len);
                let hashed =
                    self.unused_variant(&holder, disambiguated_tool_name(&holder.0, &holder.1));
                self.rename(&holder, &plain, &hashed);
                *self
                    .losers
                    .entry(plain.clone())
                    .or_default()
                    .entry_or_default(holder) += registrations;
                plain
            }
            Some(_) => {
                *self
                    .losers
                    .entry(plain)
                    .or_default()
                    .entry_or_default(pair.clone()) += 1;
                self.unused_variant(pair, disambiguated_tool_name(&pair.0, &pair.1))
            }
        }
    }

    /// Whether `name` is unused, or used by `pair` itself.
    fn free_for(&self, pair: &Pair, name: &str) -> bool {
        self.tools.get(name).is_none_or(|providers| {
            providers
                .values()
                .all(|p| *p.skill == *pair.0 && p.tool.name == pair.1)
        })
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

    /// The hashed name (or variant) `pair`'s registrations use now, if any.
    fn current_hashed_name(&self, pair: &Pair) -> Option<String> {
        std::iter::once(disambiguated_tool_name(&pair.0, &pair.1))
            .chain(
                (2..=9).map(|n| disambiguated_tool_name(&pair.0, &format!("{}\u{0}{n}", pair.1))),
            )
            .find(|name| {
                self.tools.get(name).is_some_and(|providers| {
                    providers
                        .values()
                        .any(|p| *p.skill == *pair.0 && p.tool.name == pair.1)
                })
            })
    }

    /// Gives back the name `name` of one registration of `pair` (already out of the index):
    /// when the holder's last registration goes, the smallest other claimant takes the plain
    /// name.
    fn give_back(&mut self, pair: &Pair, name: &str) {
        let Some(plain) = plain_name(pair) else {
            return;
        };
        if name == plain {
            if self.tools.contains_key(&plain) {
                return;
            }
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
            if let Some(hashed) = self.current_hashed_name(&next) {
                self.rename(&next, &hashed, &plain);
            }
        } else if let Some(losers) = self.losers.get_mut(&plain) {
            if let Some(count) = losers.get_mut(pair) {
                *count -= 1;
                if *count == 0 {
                    losers.remove(pair);
                }
            }
            if losers.is_empty() {
                self.losers.remove(&plain);
            }
        }
    }

    /// The pair holding a plain name now.
    fn holder(&self, plain: &str) -> Option<Pair> {
        let (_, provider) = self.tools.get(plain)?.iter().next()?;
        let pair = (provider.skill.to_string(), provider.tool.name.clone());
        (plain_name(&pair).as_deref() == Some(plain)).then_some(pair)
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

    /// Moves every registration of `pair` from public name `from` to `to`.
    fn rename(&mut self, pair: &Pair, from: &str, to: &str) {
        let Some(providers) = self.tools.get_mut(from) else {
            return;
        };
        let moving: Vec<SkillKey> = providers
            .iter()
            .filter(|(_, p)| *p.skill == *pair.0 && p.tool.name == pair.1)
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
                    .map(|p| (name.clone(), p.skill.to_string(), p.tool.name.clone()))
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
            assert!(catalog.tools.is_empty() && catalog.skills.is_empty());
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
        assert!(catalog.tools.is_empty() && catalog.losers.is_empty());
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
}
