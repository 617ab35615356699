//! The real third-party MCP servers the tests run, as installed by
//! `scripts/install-test-deps.sh` into the test cache.

use mimo_skill_host::SkillSpec;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

const HOW_TO_INSTALL: &str =
    "run scripts/test.sh (or scripts/install-test-deps.sh): it installs the MCP servers these tests use";

/// `@modelcontextprotocol/server-everything` (npm), started over stdio.
pub fn everything_server() -> SkillSpec {
    server(
        "MIMO_TEST_EVERYTHING_COMMAND",
        "MIMO_TEST_EVERYTHING_ARGS_JSON",
    )
}

/// `@modelcontextprotocol/server-filesystem` (npm) over stdio, allowed to use `root` only.
pub fn filesystem_server(root: &std::path::Path) -> SkillSpec {
    let variables = test_variables();
    let command = required(&variables, "MIMO_TEST_FILESYSTEM_COMMAND");
    let entry = required(&variables, "MIMO_TEST_FILESYSTEM_ENTRY");
    SkillSpec {
        command,
        args: vec![entry, root.to_string_lossy().into_owned()],
        ..SkillSpec::default()
    }
}

pub(crate) fn required(variables: &HashMap<String, String>, key: &str) -> String {
    variables
        .get(key)
        .unwrap_or_else(|| panic!("{key} is not set; {HOW_TO_INSTALL}"))
        .clone()
}

/// `mcp-server-time` (PyPI), started over stdio.
pub fn time_server() -> SkillSpec {
    server("MIMO_TEST_TIME_COMMAND", "MIMO_TEST_TIME_ARGS_JSON")
}

/// The workspace's `misbehaving-skill` (faults chosen by `args`), found beside the running
/// program: for the bench and soak binaries, which cargo builds into the same folder.
pub fn misbehaving_skill_beside_this_program(args: &[&str]) -> SkillSpec {
    let exe = std::env::current_exe().expect("own path");
    SkillSpec {
        command: exe
            .with_file_name("misbehaving-skill")
            .to_string_lossy()
            .into_owned(),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        ..SkillSpec::default()
    }
}

/// Path of a file under `integration-tests/data`.
pub fn test_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

fn server(command_key: &str, args_key: &str) -> SkillSpec {
    let variables = test_variables();
    let command = variables
        .get(command_key)
        .unwrap_or_else(|| panic!("{command_key} is not set; {HOW_TO_INSTALL}"))
        .clone();
    let args_json = variables
        .get(args_key)
        .unwrap_or_else(|| panic!("{args_key} is not set; {HOW_TO_INSTALL}"));
    let args: Vec<String> = serde_json::from_str(args_json)
        .unwrap_or_else(|e| panic!("{args_key} is not a JSON array of strings: {e}"));
    assert!(
        std::path::Path::new(&command).exists(),
        "{command} does not exist; {HOW_TO_INSTALL}"
    );
    SkillSpec {
        command,
        args,
        env: BTreeMap::new(),
        cwd: None,
        lazy: false,
        instances: 1,
    }
}

/// `MIMO_TEST_*` variables from the environment, else from the cache's `env.sh`.
pub(crate) fn test_variables() -> HashMap<String, String> {
    let mut variables: HashMap<String, String> = std::env::vars()
        .filter(|(key, _)| key.starts_with("MIMO_TEST_"))
        .collect();
    let cache = variables
        .get("MIMO_TEST_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/mimo-test"))
        });
    if let Some(text) = cache.and_then(|dir| std::fs::read_to_string(dir.join("env.sh")).ok()) {
        for line in text.lines() {
            let Some(assignment) = line.strip_prefix("export ") else {
                continue;
            };
            let Some((key, value)) = assignment.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('\'').to_string();
            variables.entry(key.to_string()).or_insert(value);
        }
    }
    variables
}
