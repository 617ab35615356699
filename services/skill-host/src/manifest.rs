//! Tool manifests: the catalogue a skill gave at its last discovery, kept on disk so that a
//! lazy skill's tools are served before it ever starts, and no catalogue is empty just
//! because its skill is still starting. A manifest is used only with the exact spec (command,
//! arguments, environment) it was made with; it records a hash of the spec, never the spec.

use crate::mcp::ServerInfo;
use crate::skills_file::SkillSpec;
use mimo_proto::v1::Tool;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format version written in each manifest; others are ignored.
const MANIFEST_VERSION: u32 = 1;

/// What a skill said at its last discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `serverInfo` and protocol version.
    pub info: ServerInfo,
    /// The tool catalogue.
    pub tools: Vec<Tool>,
}

#[derive(Serialize, Deserialize)]
struct ManifestFile {
    version: u32,
    spec_hash: String,
    server_name: String,
    server_version: String,
    protocol_version: String,
    tools: Vec<ToolEntry>,
}

#[derive(Serialize, Deserialize)]
struct ToolEntry {
    name: String,
    description: String,
    input_schema_json: String,
    title: String,
}

/// The folder of manifests, one file per skill.
#[derive(Debug, Clone)]
pub struct ManifestStore {
    folder: PathBuf,
}

impl ManifestStore {
    /// Keeps manifests under `state_dir/manifests`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            folder: state_dir.join("manifests"),
        }
    }

    fn path(&self, skill: &str) -> PathBuf {
        let hex: String = skill.bytes().map(|byte| format!("{byte:02x}")).collect();
        self.folder.join(format!("{hex}.json"))
    }

    /// The manifest of `skill` made with `spec`, if one is stored and readable.
    pub fn load(&self, skill: &str, spec: &SkillSpec) -> Option<Manifest> {
        let text = std::fs::read_to_string(self.path(skill)).ok()?;
        let file: ManifestFile = match serde_json::from_str(&text) {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(skill, %error, "ignoring an unreadable tool manifest");
                return None;
            }
        };
        if file.version != MANIFEST_VERSION || file.spec_hash != spec_hash(spec) {
            return None;
        }
        if let Err(reason) = check_tools(&file.tools) {
            tracing::warn!(skill, %reason, "ignoring a tool manifest that is not valid");
            return None;
        }
        Some(Manifest {
            info: ServerInfo {
                name: file.server_name,
                version: file.server_version,
                protocol_version: file.protocol_version,
            },
            tools: file
                .tools
                .into_iter()
                .map(|tool| Tool {
                    name: tool.name,
                    description: tool.description,
                    input_schema_json: tool.input_schema_json,
                    title: tool.title,
                })
                .collect(),
        })
    }

    /// Forgets the manifest of a skill removed from the host.
    pub fn forget(&self, skill: &str) {
        let _ = std::fs::remove_file(self.path(skill));
    }

    /// Stores the manifest of `skill` (whole, or not at all).
    pub fn save(&self, skill: &str, spec: &SkillSpec, manifest: &Manifest) {
        let file = ManifestFile {
            version: MANIFEST_VERSION,
            spec_hash: spec_hash(spec),
            server_name: manifest.info.name.clone(),
            server_version: manifest.info.version.clone(),
            protocol_version: manifest.info.protocol_version.clone(),
            tools: manifest
                .tools
                .iter()
                .map(|tool| ToolEntry {
                    name: tool.name.clone(),
                    description: tool.description.clone(),
                    input_schema_json: tool.input_schema_json.clone(),
                    title: tool.title.clone(),
                })
                .collect(),
        };
        let path = self.path(skill);
        let partial = path.with_extension("partial");
        let written = std::fs::create_dir_all(&self.folder)
            .and_then(|()| {
                let text = serde_json::to_string(&file).map_err(std::io::Error::other)?;
                std::fs::write(&partial, text)
            })
            .and_then(|()| std::fs::rename(&partial, &path));
        if let Err(error) = written {
            tracing::warn!(skill, %error, path = %path.display(), "could not store the tool manifest");
        }
    }
}

/// Refuses what discovery never produces: nameless or repeated tools, schemas that are not
/// JSON objects (a manifest edited or damaged on disk).
fn check_tools(tools: &[ToolEntry]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for tool in tools {
        if tool.name.is_empty() || !names.insert(tool.name.as_str()) {
            return Err(format!("tool name {:?} is empty or repeated", tool.name));
        }
        let schema: Result<serde_json::Value, _> = serde_json::from_str(&tool.input_schema_json);
        if !matches!(schema, Ok(serde_json::Value::Object(_))) {
            return Err(format!(
                "tool {:?} has a schema that is not a JSON object",
                tool.name
            ));
        }
    }
    Ok(())
}

/// A stable hash (FNV-1a, 64 bits) of everything that decides which server runs.
fn spec_hash(spec: &SkillSpec) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes.iter().chain(&[0xff]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(spec.command.as_bytes());
    for arg in &spec.args {
        feed(arg.as_bytes());
    }
    for (key, value) in &spec.env {
        feed(key.as_bytes());
        feed(value.as_bytes());
    }
    feed(
        spec.cwd
            .as_deref()
            .map(|cwd| cwd.to_string_lossy().into_owned())
            .unwrap_or_default()
            .as_bytes(),
    );
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str) -> SkillSpec {
        SkillSpec {
            command: command.into(),
            ..SkillSpec::default()
        }
    }

    #[test]
    fn a_manifest_comes_back_only_for_the_spec_it_was_made_with() {
        let folder = tempfile::tempdir().unwrap();
        let store = ManifestStore::new(folder.path());
        let manifest = Manifest {
            info: ServerInfo {
                name: "server".into(),
                version: "1".into(),
                protocol_version: "2025-06-18".into(),
            },
            tools: vec![Tool {
                name: "echo".into(),
                description: "echoes".into(),
                input_schema_json: r#"{"type":"object"}"#.into(),
                title: String::new(),
            }],
        };
        assert_eq!(store.load("a/b c", &spec("x")), None);
        store.save("a/b c", &spec("x"), &manifest);
        assert_eq!(store.load("a/b c", &spec("x")), Some(manifest));
        assert_eq!(store.load("a/b c", &spec("y")), None, "another command");
        assert_eq!(store.load("other", &spec("x")), None, "another skill");
        // A manifest damaged on disk is ignored, not served.
        let path = store.path("a/b c");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(r#"{\"type\":\"object\"}"#, "[1]")).unwrap();
        assert_eq!(store.load("a/b c", &spec("x")), None);
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(store.load("a/b c", &spec("x")), None);
    }
}
