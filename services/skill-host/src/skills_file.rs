//! The skills file: the `mcpServers` JSON that MCP users already keep (Claude Desktop's
//! `{"mcpServers": {...}}`, or the bare `{"NAME": {...}}` map), parsed strictly into specs.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Longest skill name accepted.
pub const MAX_SKILL_NAME_LEN: usize = 64;

/// How to start one skill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkillSpec {
    /// Program to run (looked up in `PATH` when it has no slash).
    pub command: String,
    /// Arguments passed to the program.
    pub args: Vec<String>,
    /// Variables added to the inherited environment, with `${VAR}` already filled in.
    pub env: BTreeMap<String, String>,
    /// Working directory, when set.
    pub cwd: Option<PathBuf>,
    /// Started on its first call and stopped when idle; its tools are served meanwhile from
    /// the manifest of its last discovery (Mimo's `"lazy": true` key).
    pub lazy: bool,
    /// Identical processes run for the skill, calls spread across them (Mimo's
    /// `"instances": N` key); 0 is read as 1.
    pub instances: u32,
}

/// Most instances one skill may ask for.
pub const MAX_INSTANCES: u32 = 32;

/// Why a skills file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SkillsFileError {
    /// The file could not be read.
    #[error("cannot read skills file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("skills file {path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Where and why parsing failed.
        source: serde_json::Error,
    },
    /// The top level is not an object of skills.
    #[error("skills file must be a JSON object: {{\"mcpServers\": {{\"NAME\": {{\"command\": ...}}}}}} or {{\"NAME\": {{\"command\": ...}}}}")]
    NotAnObject,
    /// One skill's entry is wrong.
    #[error("skill {skill:?}: {reason}")]
    Skill {
        /// The skill's name.
        skill: String,
        /// What is wrong, naming the field.
        reason: String,
    },
}

/// One entry as written in the file; unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    /// Claude Code and VS Code write `"type": "stdio"`; only stdio is supported.
    #[serde(default, rename = "type")]
    transport: Option<String>,
    /// Some clients mark entries `"disabled": true`; such skills are skipped.
    #[serde(default)]
    disabled: bool,
    /// Mimo's own key: start on the first call, stop when idle.
    #[serde(default)]
    lazy: bool,
    /// Mimo's own key: identical processes to run, calls spread across them.
    #[serde(default)]
    instances: Option<u32>,
}

/// Reads and parses a skills file; see [`parse_skills`].
pub fn load_skills_file(
    path: &Path,
    lookup_env: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, SkillSpec>, SkillsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SkillsFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|source| SkillsFileError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    parse_skills(value, lookup_env)
}

/// Parses the skills of a skills file's JSON, filling `${VAR}` in `env` values through
/// `lookup_env`. Disabled entries are left out.
pub fn parse_skills(
    value: Value,
    lookup_env: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, SkillSpec>, SkillsFileError> {
    let Value::Object(mut top) = value else {
        return Err(SkillsFileError::NotAnObject);
    };
    let servers: Map<String, Value> = match top.remove("mcpServers") {
        Some(Value::Object(servers)) => servers,
        Some(_) => return Err(SkillsFileError::NotAnObject),
        None => top,
    };
    let mut skills = BTreeMap::new();
    for (name, entry) in servers {
        let fail = |reason: String| SkillsFileError::Skill {
            skill: name.clone(),
            reason,
        };
        validate_skill_name(&name).map_err(fail)?;
        if !entry.is_object() {
            return Err(fail(
                "entry must be an object with a \"command\" field".into(),
            ));
        }
        if entry.get("url").is_some() {
            return Err(fail(
                "field \"url\": remote (HTTP/SSE) MCP servers are not supported; give a \"command\" that speaks MCP over stdio".into(),
            ));
        }
        let raw: RawEntry = serde_json::from_value(entry).map_err(|e| fail(e.to_string()))?;
        if raw.disabled {
            continue;
        }
        if let Some(transport) = &raw.transport {
            if transport != "stdio" {
                return Err(fail(format!(
                    "field \"type\" is {transport:?}; only \"stdio\" is supported"
                )));
            }
        }
        if raw.command.trim().is_empty() {
            return Err(fail("field \"command\" is empty".into()));
        }
        let instances = raw.instances.unwrap_or(1);
        if !(1..=MAX_INSTANCES).contains(&instances) {
            return Err(fail(format!(
                "field \"instances\" is {instances}; give 1..={MAX_INSTANCES}"
            )));
        }
        let mut env = BTreeMap::new();
        for (key, template) in raw.env {
            let filled = expand_variables(&template, &lookup_env)
                .map_err(|reason| fail(format!("field \"env\", key {key:?}: {reason}")))?;
            env.insert(key, filled);
        }
        skills.insert(
            name,
            SkillSpec {
                command: raw.command,
                args: raw.args,
                env,
                cwd: raw.cwd,
                lazy: raw.lazy,
                instances,
            },
        );
    }
    Ok(skills)
}

fn validate_skill_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("skill name is empty".into());
    }
    if name.len() > MAX_SKILL_NAME_LEN {
        return Err(format!(
            "skill name is {} bytes; the limit is {MAX_SKILL_NAME_LEN}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("skill name contains control characters".into());
    }
    Ok(())
}

/// Replaces each `${NAME}` in `template`; an unset variable or an unclosed `${` is an error.
pub fn expand_variables(
    template: &str,
    lookup_env: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed \"${{\" in {template:?}"))?;
        let variable = &after[..end];
        if variable.is_empty() {
            return Err(format!("empty \"${{}}\" in {template:?}"));
        }
        let value = lookup_env(variable)
            .ok_or_else(|| format!("environment variable {variable} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_string())
    }

    #[test]
    fn reads_claude_desktop_format_and_fills_variables() {
        let skills = parse_skills(
            json!({"mcpServers": {"fs": {
                "command": "npx", "args": ["-y", "server"], "env": {"KEY": "Bearer ${TOKEN}!"}
            }}}),
            env,
        )
        .unwrap();
        let fs = &skills["fs"];
        assert_eq!(fs.command, "npx");
        assert_eq!(fs.args, vec!["-y", "server"]);
        assert_eq!(fs.env["KEY"], "Bearer s3cret!");
    }

    #[test]
    fn reads_the_bare_map_and_skips_disabled_entries() {
        let skills = parse_skills(
            json!({"a": {"command": "x"}, "b": {"command": "y", "disabled": true}, "c": {"command": "z", "type": "stdio"}}),
            env,
        )
        .unwrap();
        assert_eq!(skills.keys().collect::<Vec<_>>(), vec!["a", "c"]);
    }

    #[test]
    fn instances_default_to_one_and_are_bounded() {
        let skills = parse_skills(
            json!({"a": {"command": "x", "instances": 4}, "b": {"command": "y"}}),
            env,
        )
        .unwrap();
        assert_eq!((skills["a"].instances, skills["b"].instances), (4, 1));
        for bad in [0, 33] {
            let error = parse_skills(json!({"a": {"command": "x", "instances": bad}}), env)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("\"instances\"") && error.contains("1..=32"),
                "{error}"
            );
        }
    }

    #[test]
    fn lazy_is_read_and_defaults_to_false() {
        let skills = parse_skills(
            json!({"a": {"command": "x", "lazy": true}, "b": {"command": "y"}}),
            env,
        )
        .unwrap();
        assert!(skills["a"].lazy);
        assert!(!skills["b"].lazy);
        let wrong = parse_skills(json!({"a": {"command": "x", "lazy": "yes"}}), env)
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("\"a\"") && wrong.contains("boolean"),
            "{wrong}"
        );
    }

    #[test]
    fn unset_variable_is_an_error_naming_skill_key_and_variable() {
        let error = parse_skills(
            json!({"gh": {"command": "x", "env": {"GITHUB_TOKEN": "${NOT_SET_ANYWHERE}"}}}),
            env,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("\"gh\""), "{error}");
        assert!(error.contains("GITHUB_TOKEN"), "{error}");
        assert!(error.contains("NOT_SET_ANYWHERE is not set"), "{error}");
    }

    #[test]
    fn unknown_and_malformed_fields_are_refused_with_skill_and_field() {
        let unknown = parse_skills(json!({"s": {"command": "x", "argz": []}}), env)
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("\"s\"") && unknown.contains("argz"),
            "{unknown}"
        );
        let wrong_type = parse_skills(json!({"s": {"command": "x", "args": "-v"}}), env)
            .unwrap_err()
            .to_string();
        assert!(
            wrong_type.contains("\"s\"") && wrong_type.contains("sequence"),
            "{wrong_type}"
        );
        let missing = parse_skills(json!({"s": {"args": []}}), env)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("command"), "{missing}");
        let remote = parse_skills(json!({"s": {"url": "http://x"}}), env)
            .unwrap_err()
            .to_string();
        assert!(
            remote.contains("url") && remote.contains("not supported"),
            "{remote}"
        );
        assert!(matches!(
            parse_skills(json!([1]), env),
            Err(SkillsFileError::NotAnObject)
        ));
    }

    #[test]
    fn unclosed_variable_is_an_error() {
        assert!(expand_variables("${OPEN", env)
            .unwrap_err()
            .contains("unclosed"));
        assert_eq!(expand_variables("plain", env).unwrap(), "plain");
    }
}
