//! The catalogue of registered skills and their tools, indexed by public tool name.

use crate::naming::{disambiguated_tool_name, public_tool_name};
use mimo_proto::v1::Tool;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
}

/// Skills and tools; every change keeps the indexes consistent.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    skills: BTreeMap<SkillKey, SkillEntry>,
    skills_by_lease: HashMap<u64, BTreeSet<String>>,
    tools: BTreeMap<String, BTreeMap<SkillKey, ToolProvider>>,
    tool_count: usize,
}

impl Catalog {
    /// Number of registered skills (a skill served by two hosts counts twice).
    pub(crate) fn skill_count(&self) -> usize {
        self.skills.len()
    }

    /// Number of registered tools (counted per registering skill).
    pub(crate) fn tool_count(&self) -> usize {
        self.tool_count
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
        self.remove_skill(lease, skill);
        let key: SkillKey = (lease, skill.to_string());
        let mut entry = SkillEntry {
            endpoint: endpoint.to_string(),
            tools: Vec::with_capacity(tools.len()),
        };
        for tool in tools {
            let name = self.free_public_name(skill, &tool.name);
            self.tools.entry(name.clone()).or_default().insert(
                key.clone(),
                ToolProvider {
                    skill: skill.to_string(),
                    tool: tool.clone(),
                    endpoint: endpoint.to_string(),
                },
            );
            entry.tools.push((name, tool));
        }
        self.tool_count += entry.tools.len();
        let names = entry.tools.iter().map(|(name, _)| name.clone()).collect();
        self.skills.insert(key, entry);
        self.skills_by_lease
            .entry(lease)
            .or_default()
            .insert(skill.to_string());
        names
    }

    /// Removes every skill attached to the lease; returns how many there were.
    pub(crate) fn remove_lease(&mut self, lease: u64) -> usize {
        let skills = self.skills_by_lease.remove(&lease).unwrap_or_default();
        for skill in &skills {
            self.remove_skill(lease, skill);
        }
        skills.len()
    }

    /// Providers of the public tool name, in a stable order.
    pub(crate) fn providers(&self, public_name: &str) -> Vec<&ToolProvider> {
        self.tools
            .get(public_name)
            .map(|providers| providers.values().collect())
            .unwrap_or_default()
    }

    /// Every public tool name with its providers, sorted by name.
    pub(crate) fn tools(&self) -> impl Iterator<Item = (&String, Vec<&ToolProvider>)> {
        self.tools
            .iter()
            .map(|(name, providers)| (name, providers.values().collect()))
    }

    /// Every registered skill with its lease, sorted by lease then name.
    pub(crate) fn skills(&self) -> impl Iterator<Item = (&SkillKey, &SkillEntry)> {
        self.skills.iter()
    }

    /// Removes one skill from the lease; returns how many tools went with it.
    pub(crate) fn remove_skill(&mut self, lease: u64, skill: &str) -> usize {
        let key: SkillKey = (lease, skill.to_string());
        let Some(entry) = self.skills.remove(&key) else {
            return 0;
        };
        let removed = entry.tools.len();
        self.tool_count -= entry.tools.len();
        for (name, _) in entry.tools {
            if let Some(providers) = self.tools.get_mut(&name) {
                providers.remove(&key);
                if providers.is_empty() {
                    self.tools.remove(&name);
                }
            }
        }
        if let Some(skills) = self.skills_by_lease.get_mut(&lease) {
            skills.remove(skill);
        }
        removed
    }

    /// The plain public name, unless a different (skill, tool) pair holds it already.
    fn free_public_name(&self, skill: &str, tool: &str) -> String {
        let name = public_tool_name(skill, tool);
        let taken_by_other = self.tools.get(&name).is_some_and(|providers| {
            providers
                .values()
                .any(|provider| provider.skill != skill || provider.tool.name != tool)
        });
        if taken_by_other {
            disambiguated_tool_name(skill, tool)
        } else {
            name
        }
    }
}
