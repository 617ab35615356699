//! End-to-end tests of the `mimo` binary as people and scripts use it: `mimo up` runs every
//! service with two real third-party MCP servers as skills, and the client commands, a Python
//! client generated from the protos, signals and bad configuration are tried against it.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const MIMO: &str = env!("CARGO_BIN_EXE_mimo");
const HOW_TO_INSTALL: &str = "run scripts/test.sh: it installs the MCP servers these tests use";
/// Generous bound for anything to become true on a slow, shared 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);
/// Longest a `mimo up` may take to exit after SIGTERM.
const STOP_PATIENCE: Duration = Duration::from_secs(30);
/// Longest one client command may run.
const COMMAND_PATIENCE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Polls `check` until it gives `Some`, or panics after `timeout` naming `what` and the last
/// reason `check` gave for not being done.
fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        let last = match check() {
            Ok(value) => return value,
            Err(reason) => reason,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Waits for `child` to exit within `timeout`; `None` if it is still running.
fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn send_sigterm(pid: u32) {
    send_signal(pid, "TERM");
}

/// A `mimo` command with no `MIMO_*` setting inherited from the test's environment.
fn mimo_command(working_dir: &Path) -> Command {
    let mut command = Command::new(MIMO);
    command.current_dir(working_dir).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("MIMO_") && key_text != "MIMO_LOG" {
            command.env_remove(&key);
        }
    }
    command
}

/// Runs `command` to completion with captured output; kills it after `COMMAND_PATIENCE`.
fn run(mut command: Command) -> Output {
    let description = format!("{command:?}");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {description}: {e}"));
    // Drain both pipes on threads so that a chatty command never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let stdout_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let Some(status) = wait_for_exit(&mut child, COMMAND_PATIENCE) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{description} did not finish within {COMMAND_PATIENCE:?}");
    };
    Output {
        status,
        stdout: stdout_reader.join().expect("stdout reader"),
        stderr: stderr_reader.join().expect("stderr reader"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `MIMO_TEST_*` variables from the environment, else from the test cache's `env.sh`.
fn test_variables() -> HashMap<String, String> {
    let mut variables: HashMap<String, String> = std::env::vars()
        .filter(|(key, _)| key.starts_with("MIMO_TEST_"))
        .collect();
    let cache = variables
        .get("MIMO_TEST_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/mimo-test"))
        });
    let env_file = cache.and_then(|dir| std::fs::read_to_string(dir.join("env.sh")).ok());
    for line in env_file.as_deref().unwrap_or_default().lines() {
        let Some((key, value)) = line
            .trim()
            .strip_prefix("export ")
            .and_then(|a| a.split_once('='))
        else {
            continue;
        };
        let value = value.trim().trim_matches('\'').trim_matches('"');
        variables
            .entry(key.to_string())
            .or_insert_with(|| value.to_string());
    }
    variables
}

fn required<'a>(variables: &'a HashMap<String, String>, key: &str) -> &'a str {
    variables
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{key} is not set; {HOW_TO_INSTALL}"))
}

/// The skills file entry of one installed MCP server.
fn server_entry(variables: &HashMap<String, String>, prefix: &str) -> serde_json::Value {
    let command = required(variables, &format!("MIMO_TEST_{prefix}_COMMAND"));
    let args_key = format!("MIMO_TEST_{prefix}_ARGS_JSON");
    let args: Vec<String> = serde_json::from_str(required(variables, &args_key))
        .unwrap_or_else(|e| panic!("{args_key} is not a JSON array of strings: {e}"));
    assert!(
        Path::new(command).exists(),
        "{command} does not exist; {HOW_TO_INSTALL}"
    );
    serde_json::json!({"command": command, "args": args})
}

/// The Python that has grpcio-tools installed.
fn test_python() -> String {
    required(&test_variables(), "MIMO_TEST_PYTHON").to_string()
}

/// Addresses of the four services, as `mimo up` wrote them to its ready file.
#[derive(Debug, Clone)]
struct Addresses {
    registry: String,
    skill_host: String,
    memory: String,
    telemetry: String,
}

/// A `mimo up` with the everything and time servers as skills, in a temporary folder; stopped
/// with SIGTERM (then SIGKILL) when dropped.
struct Mimo {
    child: Child,
    exit: Option<ExitStatus>,
    addresses: Addresses,
    folder: tempfile::TempDir,
    /// Set for every client command.
    env: Vec<(String, String)>,
}

impl Mimo {
    /// Starts `mimo up` and returns once both skills' tools are listed.
    fn start() -> Mimo {
        let variables = test_variables();
        let skills = serde_json::json!({"mcpServers": {
            "everything": server_entry(&variables, "EVERYTHING"),
            "time": server_entry(&variables, "TIME"),
        }});
        let folder = tempfile::tempdir().expect("tempdir");
        let data = folder.path().join("data");
        Mimo::launch(
            folder,
            &skills,
            &data,
            &["everything_echo", "time_get_current_time"],
        )
    }

    /// Starts `mimo up` in `folder` with `skills` and data under `data`, and returns once
    /// each of `tools` is listed.
    fn launch(
        folder: tempfile::TempDir,
        skills: &serde_json::Value,
        data: &Path,
        tools: &[&str],
    ) -> Mimo {
        Mimo::launch_with(folder, skills, data, tools, &[], &[])
    }

    /// [`Mimo::launch`] with `extra` arguments to `mimo up`, and `env` set for it and for
    /// every client command run through it.
    fn launch_with(
        folder: tempfile::TempDir,
        skills: &serde_json::Value,
        data: &Path,
        tools: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Mimo {
        let skills_file = folder.path().join("skills.json");
        std::fs::write(&skills_file, skills.to_string()).expect("write skills file");
        let ready_file = folder.path().join("ready.json");
        let log = std::fs::File::create(folder.path().join("mimo-up.log")).expect("log file");
        let mut command = mimo_command(folder.path());
        command
            .args(["up", "--ready-file"])
            .arg(&ready_file)
            .args(["--registry-listen", "127.0.0.1:0"])
            .args(["--skill-host-listen", "127.0.0.1:0"])
            .args(["--memory-listen", "127.0.0.1:0"])
            .args(["--telemetry-listen", "127.0.0.1:0"])
            // By the environment, so that a test's `env` can turn it off.
            .env("MIMO_TELEMETRY_HTTP_LISTEN", "127.0.0.1:0")
            .arg("--data-dir")
            .arg(data)
            .arg("--skills")
            .arg(&skills_file)
            .args(["--report-interval-ms", "200"])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log);
        let child = command.spawn().expect("spawn mimo up");
        // Addresses are filled in below; until then a panic still stops the child in drop.
        let mut mimo = Mimo {
            child,
            exit: None,
            addresses: Addresses {
                registry: String::new(),
                skill_host: String::new(),
                memory: String::new(),
                telemetry: String::new(),
            },
            folder,
            env: env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        };
        let ready: serde_json::Value = wait_until("the ready file of mimo up", PATIENCE, || {
            if let Some(status) = mimo.child.try_wait().expect("try_wait") {
                panic!("mimo up exited early ({status}); log:\n{}", mimo.log());
            }
            let written = std::fs::read_to_string(&ready_file).map_err(|e| e.to_string())?;
            serde_json::from_str(&written).map_err(|e| format!("{e}: {written}"))
        });
        let address = |key: &str| {
            ready[key]
                .as_str()
                .unwrap_or_else(|| panic!("ready file lacks {key:?}: {ready}"))
                .to_string()
        };
        assert!(
            ready["skill_host"].is_string(),
            "ready file lacks skill_host: {ready}"
        );
        mimo.addresses = Addresses {
            registry: address("registry"),
            skill_host: address("skill_host"),
            memory: address("memory"),
            telemetry: address("telemetry"),
        };
        wait_until("the skills' tools in `mimo tools list`", PATIENCE, || {
            let listed = mimo.client(&["tools", "list"]);
            let stdout = text(&listed.stdout);
            let has = |name: &&str| {
                stdout
                    .lines()
                    .any(|line| line.split_whitespace().next() == Some(*name))
            };
            if listed.status.success() && tools.iter().all(has) {
                Ok(())
            } else {
                Err(format!(
                    "{}: {stdout}{}",
                    listed.status,
                    text(&listed.stderr)
                ))
            }
        });
        mimo
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("mimo-up.log")).unwrap_or_default()
    }

    /// Runs a client command pointed at this `mimo up`.
    fn client(&self, args: &[&str]) -> Output {
        let mut command = mimo_command(self.folder.path());
        command
            .args(args)
            .args(["--registry-address", &self.addresses.registry])
            .args(["--skill-host-address", &self.addresses.skill_host])
            .args(["--memory-address", &self.addresses.memory])
            .args(["--telemetry-address", &self.addresses.telemetry])
            .envs(self.env.iter().map(|(key, value)| (key, value)));
        run(command)
    }

    /// Runs a client command that must succeed; returns its stdout.
    fn client_ok(&self, args: &[&str]) -> String {
        let output = self.client(args);
        assert!(
            output.status.success(),
            "mimo {args:?} failed ({}): stdout: {} stderr: {}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Runs a client command that must exit 1 with `error: <code>: ...`; returns its stderr.
    fn client_fails_with(&self, args: &[&str], code: &str) -> String {
        let output = self.client(args);
        let stderr = text(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "mimo {args:?} should exit 1; stdout: {} stderr: {stderr}",
            text(&output.stdout)
        );
        assert!(
            stderr.contains(&format!("error: {code}: ")),
            "mimo {args:?} should print `error: {code}: ...`; stderr: {stderr}"
        );
        stderr
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            send_sigterm(self.pid());
            self.exit = wait_for_exit(&mut self.child, timeout);
        }
        self.exit
    }
}

impl Drop for Mimo {
    fn drop(&mut self) {
        if self.stop(Duration::from_secs(20)).is_none() {
            eprintln!("mimo up did not stop within 20 s of SIGTERM; killing it");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, PartialEq)]
struct ProcessInfo {
    state: char,
    parent: u32,
    group: u32,
    start_ticks: u64,
}

fn process_info(pid: u32) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some(ProcessInfo {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        group: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

fn all_processes() -> BTreeMap<u32, ProcessInfo> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, process_info(pid)?)))
        .collect()
}

/// True while `pid` still names the same, not yet dead process.
fn still_running(pid: u32, seen: &ProcessInfo) -> bool {
    process_info(pid).is_some_and(|now| now.start_ticks == seen.start_ticks && now.state != 'Z')
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn cli_tour_lists_and_calls_tools_remembers_and_reports_status() {
    let mimo = Mimo::start();

    let skills = mimo.client_ok(&["skills", "list"]);
    let ready: Vec<&str> = skills
        .lines()
        .skip(1)
        .filter(|line| line.split_whitespace().nth(1) == Some("ready"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(ready, ["everything", "time"], "{skills}");
    let shown = mimo.client_ok(&["skills", "show", "time"]);
    assert!(shown.contains("\"get_current_time\""), "{shown}");
    let bad_entry = mimo.client_fails_with(
        &[
            "skills",
            "add",
            "broken",
            "--entry",
            r#"{"command": "x", "argz": []}"#,
        ],
        "InvalidArgument",
    );
    assert!(bad_entry.contains("argz"), "{bad_entry}");

    let listed = mimo.client_ok(&["tools", "list"]);
    let names: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains(&"everything_echo"), "{listed}");
    assert!(names.contains(&"time_get_current_time"), "{listed}");
    println!("tools list: {} tools", names.len());

    let echoed = mimo.client_ok(&[
        "tools",
        "call",
        "everything_echo",
        "--args",
        r#"{"message":"hello from the cli"}"#,
    ]);
    assert_eq!(echoed.trim(), "Echo: hello from the cli");

    let time = mimo.client_ok(&[
        "tools",
        "call",
        "time_get_current_time",
        "--args",
        r#"{"timezone":"UTC"}"#,
    ]);
    let time: serde_json::Value =
        serde_json::from_str(&time).unwrap_or_else(|e| panic!("not JSON ({e}): {time}"));
    assert_eq!(time["timezone"], "UTC", "{time}");
    assert!(time["datetime"].is_string(), "{time}");

    let malformed = mimo.client_fails_with(
        &[
            "tools",
            "call",
            "everything_echo",
            "--args",
            r#"{"message": "#,
        ],
        "InvalidArgument",
    );
    assert!(malformed.contains("arguments_json"), "{malformed}");
    let refused = mimo.client(&[
        "tools",
        "call",
        "time_get_current_time",
        "--args",
        r#"{"timezone":"Mars/Olympus_Mons"}"#,
    ]);
    assert_eq!(refused.status.code(), Some(1), "a tool error must exit 1");
    assert!(
        text(&refused.stderr).contains("the tool reported an error"),
        "{}",
        text(&refused.stderr)
    );
    let unknown = mimo.client_fails_with(&["tools", "call", "no_such_tool"], "NotFound");
    assert!(unknown.contains("no_such_tool"), "{unknown}");

    let dog = "The user's dog is named Biscuit and loves long walks in the park";
    let dog_id = mimo.client_ok(&[
        "memory",
        "store",
        dog,
        "--category",
        "fact",
        "--importance",
        "0.7",
    ]);
    let dog_id = dog_id.trim();
    assert!(
        !dog_id.is_empty() && !dog_id.contains(char::is_whitespace),
        "store printed {dog_id:?}"
    );
    mimo.client_ok(&[
        "memory",
        "store",
        "The quarterly tax report must be filed before the end of April",
    ]);
    mimo.client_ok(&[
        "memory",
        "store",
        "Alice prefers green tea over coffee in the morning",
        "--category",
        "observation",
    ]);
    let found = mimo.client_ok(&[
        "memory",
        "search",
        "what is the name of the user's dog",
        "--limit",
        "3",
        "--min-similarity",
        "0",
    ]);
    let best = found
        .lines()
        .next()
        .unwrap_or_else(|| panic!("search found nothing"));
    let columns: Vec<&str> = best.split_whitespace().collect();
    // SCORE SIMILARITY ID [CATEGORY] CONTENT
    let similarity: f32 = columns[1].parse().unwrap_or_else(|e| panic!("{e}: {best}"));
    assert!(similarity > 0.0, "{found}");
    assert_eq!(
        columns.get(2),
        Some(&dog_id),
        "the dog should rank first:\n{found}"
    );
    assert!(best.contains("[fact]") && best.ends_with(dog), "{best}");
    mimo.client_fails_with(
        &["memory", "search", "dog", "--limit", "0"],
        "InvalidArgument",
    );

    let shown = mimo.client_ok(&["memory", "get", dog_id]);
    assert!(shown.contains(dog), "{shown}");
    mimo.client_ok(&["memory", "delete", dog_id]);
    mimo.client_fails_with(&["memory", "get", dog_id], "NotFound");

    let wanted = ["registry", "skill-host", "memory", "telemetry"];
    let status = wait_until("every service in `mimo status`", PATIENCE, || {
        let table = mimo.client_ok(&["status"]);
        let services: Vec<&str> = table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        match wanted.iter().all(|service| services.contains(service)) {
            true => Ok(table),
            false => Err(table),
        }
    });
    println!("{status}");

    // SIGHUP reloads the skills file and leaves the host serving.
    let hangup = Command::new("kill")
        .args(["-HUP", &mimo.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(hangup.success());
    wait_until("the reload in the log", PATIENCE, || {
        if mimo.log().contains("skills file reloaded") {
            Ok(())
        } else {
            Err(mimo.log())
        }
    });
    let still = mimo.client_ok(&[
        "tools",
        "call",
        "everything_echo",
        "--args",
        r#"{"message":"after HUP"}"#,
    ]);
    assert_eq!(still.trim(), "Echo: after HUP");

    // A reader that stops reading (`mimo status | head -0`) ends the command quietly.
    let mut command = mimo_command(mimo.folder.path());
    command
        .args(["status", "--telemetry-address", &mimo.addresses.telemetry])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut closed_early = command.spawn().expect("spawn mimo status");
    drop(closed_early.stdout.take());
    let output = closed_early.wait_with_output().expect("mimo status ends");
    let stderr = text(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("panicked"),
        "{}: {stderr}",
        output.status
    );

    // A deadline that passes on the client's side is called a deadline, not a cancel.
    let late = mimo.client_fails_with(
        &[
            "tools",
            "call",
            "everything_trigger-long-running-operation",
            "--args",
            r#"{"duration": 30, "steps": 2}"#,
            "--timeout-ms",
            "300",
        ],
        "DeadlineExceeded",
    );
    println!("{late}");
}

#[test]
fn python_client_generated_from_proto_works_against_mimo_up() {
    let mimo = Mimo::start();
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut command = Command::new(test_python());
    command
        .arg(repository.join("integration-tests/python/client.py"))
        .arg("--proto-root")
        .arg(repository.join("proto"))
        .args(["--registry", &mimo.addresses.registry])
        .args(["--memory", &mimo.addresses.memory])
        .args(["--telemetry", &mimo.addresses.telemetry])
        .env_remove("PYTHONPATH")
        .stdin(Stdio::null());
    let output = run(command);
    println!("{}", text(&output.stdout));
    eprintln!("{}", text(&output.stderr));
    assert!(
        output.status.success(),
        "client.py failed: {}",
        output.status
    );
}

#[test]
fn typescript_client_generated_from_proto_works_against_mimo_up() {
    let variables = test_variables();
    let node = required(&variables, "MIMO_TEST_NODE");
    let modules = Path::new(required(&variables, "MIMO_TEST_GRPC_NODE_MODULES"));
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let proto = repository.join("proto");
    // A project folder of its own: the client, its generated types, and the packages.
    let work = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(modules, work.path().join("node_modules")).expect("link packages");
    for file in ["client.ts", "tsconfig.json"] {
        std::fs::copy(
            repository.join("integration-tests/typescript").join(file),
            work.path().join(file),
        )
        .expect("copy the client");
    }
    let node_step = |what: &str, args: &[&std::ffi::OsStr]| {
        let mut command = Command::new(node);
        command
            .args(args)
            .current_dir(work.path())
            .stdin(Stdio::null());
        let output = run(command);
        assert!(
            output.status.success(),
            "{what} failed: {}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    };
    let mut generate: Vec<std::ffi::OsString> = vec![modules
        .join("@grpc/proto-loader/build/bin/proto-loader-gen-types.js")
        .into()];
    for name in ["common", "registry", "skill_host", "memory", "telemetry"] {
        generate.push(format!("mimo/v1/{name}.proto").into());
    }
    for option in [
        "--grpcLib=@grpc/grpc-js",
        "--outDir=gen",
        "--longs=String",
        "--enums=String",
        "--defaults",
        "--oneofs",
    ] {
        generate.push(option.into());
    }
    generate.push(format!("--includeDirs={}", proto.display()).into());
    let generate: Vec<&std::ffi::OsStr> = generate.iter().map(|a| a.as_os_str()).collect();
    node_step("proto-loader-gen-types", &generate);
    let tsc = modules.join("typescript/bin/tsc");
    node_step(
        "tsc",
        &[tsc.as_os_str(), "-p".as_ref(), "tsconfig.json".as_ref()],
    );

    let mimo = Mimo::start();
    let stdout = node_step(
        "the TypeScript client",
        &[
            "out/client.js".as_ref(),
            "--proto-root".as_ref(),
            proto.as_os_str(),
            "--registry".as_ref(),
            mimo.addresses.registry.as_ref(),
            "--memory".as_ref(),
            mimo.addresses.memory.as_ref(),
            "--telemetry".as_ref(),
            mimo.addresses.telemetry.as_ref(),
        ],
    );
    println!("{stdout}");
    assert!(stdout.contains("ok: every check passed"), "{stdout}");
}

#[test]
fn two_mimo_ups_on_one_postgres_database_share_their_memory() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut server = runtime.block_on(mimo_integration_tests::PostgresServer::start());
    let url = runtime.block_on(server.create_database());
    let no_skills = serde_json::json!({"mcpServers": {}});
    let up = || {
        let folder = tempfile::tempdir().expect("tempdir");
        let data = folder.path().join("data");
        Mimo::launch_with(folder, &no_skills, &data, &[], &["--database", &url], &[])
    };
    let (first, second) = (up(), up());
    let stored = first.client_ok(&["memory", "store", "the release train leaves on thursdays"]);
    assert!(
        !first.folder.path().join("data/memory.sqlite").exists(),
        "no SQLite file beside a postgres memory"
    );
    wait_until("the other mimo up to find it", PATIENCE, || {
        let found = second.client(&["memory", "search", "when does the release train leave"]);
        let stdout = text(&found.stdout);
        if found.status.success() && stdout.contains("release train leaves on thursdays") {
            Ok(())
        } else {
            Err(format!("{stored}: {stdout}{}", text(&found.stderr)))
        }
    });
    drop((first, second));
    drop(server);
}

#[test]
fn mimo_up_with_the_minilm_embedder_finds_texts_by_meaning() {
    let variables = test_variables();
    let model = required(&variables, "MIMO_TEST_MINILM_DIR").to_string();
    let folder = tempfile::tempdir().expect("tempdir");
    let data = folder.path().join("data");
    let embedder = format!("minilm:{model}");
    let mimo = Mimo::launch_with(
        folder,
        &serde_json::json!({"mcpServers": {}}),
        &data,
        &[],
        &["--memory-embedder", &embedder],
        &[],
    );
    let cat = mimo.client_ok(&["memory", "store", "The cat sat on the mat"]);
    mimo.client_ok(&["memory", "store", "Stock markets fell sharply this morning"]);
    let found = mimo.client_ok(&["memory", "search", "a kitten resting on a rug"]);
    let first = found.lines().next().unwrap_or_default();
    assert!(first.contains(cat.trim()), "best hit first: {found}");
    assert!(
        !found.contains("Stock markets"),
        "below the model's 0.3: {found}"
    );
    let stats = mimo.client_ok(&["memory", "stats"]);
    assert!(
        stats.contains("all-minilm-l6-v2") && stats.contains("384"),
        "{stats}"
    );
}

#[test]
fn one_tool_call_is_one_trace_through_the_cli_registry_skill_host_and_skill() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let collector = runtime.block_on(mimo_integration_tests::OtlpCollector::start());
    let variables = test_variables();
    let skills = serde_json::json!({"mcpServers": {
        "everything": server_entry(&variables, "EVERYTHING"),
    }});
    let folder = tempfile::tempdir().expect("tempdir");
    let data = folder.path().join("data");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mimo = Mimo::launch_with(folder, &skills, &data, &["everything_echo"], &[], &env);
    let answer = mimo.client_ok(&[
        "tools",
        "call",
        "everything_echo",
        "--args",
        r#"{"message": "traced"}"#,
    ]);
    assert!(answer.contains("traced"), "{answer}");

    // The CLI's root span, its two calls, the services' answers and the MCP request.
    let spans = wait_until("the tool call's spans at the collector", PATIENCE, || {
        let spans = collector.spans();
        let root = spans
            .iter()
            .find(|span| span.name == "mimo tools call")
            .ok_or("no CLI root span yet")?;
        let trace: Vec<_> = spans
            .iter()
            .filter(|span| span.trace_id == root.trace_id)
            .cloned()
            .collect();
        if trace.iter().any(|span| span.name == "tools/call echo") {
            Ok(trace)
        } else {
            Err(format!("{} spans of the trace so far", trace.len()))
        }
    });
    let find = |service: &str, name: &str, kind_attribute: Option<&str>| {
        spans
            .iter()
            .find(|span| {
                span.service == service
                    && span.name == name
                    && kind_attribute.is_none_or(|rpc| span.attribute("rpc.system") == Some(rpc))
            })
            .unwrap_or_else(|| panic!("no {name} span of {service}: {spans:#?}"))
            .clone()
    };
    let root = find("mimo-cli", "mimo tools call", None);
    assert!(root.parent_span_id.is_empty(), "the CLI's span is the root");
    let children_of = |parent: &mimo_integration_tests::ReceivedSpan, service: &str| {
        spans
            .iter()
            .filter(|span| span.parent_span_id == parent.span_id && span.service == service)
            .cloned()
            .collect::<Vec<_>>()
    };
    let calls = children_of(&root, "mimo-cli");
    let mut names: Vec<_> = calls.iter().map(|span| span.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["mimo.v1.Registry/ResolveTool", "mimo.v1.SkillHost/CallTool"],
        "the CLI's two client calls"
    );
    for call in &calls {
        let answered = children_of(call, "mimo");
        assert_eq!(
            answered.len(),
            1,
            "one server span under {}: {spans:#?}",
            call.name
        );
        assert_eq!(answered[0].name, call.name);
        assert_eq!(answered[0].attribute("rpc.system"), Some("grpc"));
        if call.name.ends_with("CallTool") {
            let mcp = children_of(&answered[0], "mimo");
            assert_eq!(mcp.len(), 1, "the MCP request under CallTool: {spans:#?}");
            assert_eq!(mcp[0].name, "tools/call echo");
            assert_eq!(mcp[0].attribute("mcp.server.name"), Some("everything"));
            assert_eq!(mcp[0].attribute("mcp.tool.name"), Some("echo"));
        }
    }
    drop(mimo);
}

#[test]
fn an_unreachable_collector_holds_no_call_and_shutdown_drops_its_spans_in_time() {
    let folder = tempfile::tempdir().expect("tempdir");
    let data = folder.path().join("data");
    // A port nothing listens on: every export fails.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let endpoint = format!("http://{nowhere}");
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let mut mimo = Mimo::launch_with(
        folder,
        &serde_json::json!({"mcpServers": {}}),
        &data,
        &[],
        &[],
        &env,
    );
    // Each client command exports its own spans too (and fails to, in under a second).
    for n in 0..3 {
        mimo.client_ok(&[
            "memory",
            "store",
            &format!("note {n} while traces go nowhere"),
        ]);
    }
    let status = mimo.stop(STOP_PATIENCE).unwrap_or_else(|| {
        panic!(
            "mimo up did not exit within {STOP_PATIENCE:?}; log:\n{}",
            mimo.log()
        )
    });
    assert!(status.success(), "{status}; log:\n{}", mimo.log());
    let log = mimo.log();
    let last = log
        .lines()
        .rev()
        .find(|line| line.contains("traces") && line.contains("dropped="))
        .unwrap_or_else(|| panic!("no closing trace count in the log:\n{log}"));
    let dropped: u64 = last
        .split("dropped=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no count in {last:?}"));
    assert!(
        dropped > 0,
        "the spans that could not go are counted: {last}"
    );
}

/// `mimo up` with `skills` (once `tools` are listed) and a threshold that fires while the
/// memory holds any engram (`engrams_present`); also returns telemetry's HTTP address.
fn with_engrams_alert(skills: &serde_json::Value, tools: &[&str]) -> (Mimo, String) {
    let folder = tempfile::tempdir().expect("tempdir");
    let data = folder.path().join("data");
    let thresholds = folder.path().join("thresholds.toml");
    std::fs::write(
        &thresholds,
        "[[threshold]]\nname = \"engrams_present\"\nmetric = \"memory.engrams\"\nabove = 0\n",
    )
    .expect("write thresholds");
    let thresholds_arg = thresholds.to_string_lossy().into_owned();
    let mimo = Mimo::launch_with(
        folder,
        skills,
        &data,
        tools,
        &["--telemetry-thresholds", &thresholds_arg],
        &[],
    );
    let ready: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(mimo.folder.path().join("ready.json")).expect("ready file"),
    )
    .expect("ready JSON");
    let http = ready["telemetry_http"]
        .as_str()
        .expect("telemetry_http address")
        .to_string();
    (mimo, http)
}

/// The body of `GET http://ADDRESS/PATH`, over a plain socket.
fn http_get(address: &str, path: &str) -> Result<String, String> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(COMMAND_PATIENCE))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.to_string())
        }
        _ => Err(format!("unexpected answer: {answer}")),
    }
}

#[test]
fn prometheus_thresholds_history_and_alert_watch_show_the_cluster() {
    let variables = test_variables();
    let skills = serde_json::json!({"mcpServers": {
        "everything": server_entry(&variables, "EVERYTHING"),
    }});
    let (mimo, http) = with_engrams_alert(&skills, &["everything_echo"]);
    mimo.client_ok(&[
        "tools",
        "call",
        "everything_echo",
        "--args",
        r#"{"message": "counted"}"#,
    ]);
    let id = mimo
        .client_ok(&["memory", "store", "a fact to count"])
        .trim()
        .to_string();

    let metrics = wait_until("the engram and its alert in /metrics", PATIENCE, || {
        let body = http_get(&http, "/metrics")?;
        let engrams = body.lines().any(|line| {
            line.starts_with("mimo_memory_engrams{service=\"memory\"") && line.ends_with(" 1")
        });
        let alert = body.lines().any(|line| {
            line.starts_with("mimo_alert_firing{service=\"memory\"")
                && line.contains("alert=\"engrams_present\",subject=\"memory.engrams\"")
        });
        let tool_calls = body.lines().any(|line| {
            line.starts_with("mimo_mcp_tool_calls_total{")
                && line.contains("mcp_server_name=\"everything\",mcp_tool_name=\"echo\"")
                && line.ends_with(" 1")
        });
        if engrams && alert && tool_calls {
            Ok(body)
        } else {
            Err(body
                .lines()
                .filter(|l| l.contains("engram"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    });
    for service in ["registry", "skill-host", "memory", "telemetry"] {
        let resident = format!("process_resident_memory_bytes{{service=\"{service}\"");
        assert!(
            metrics.lines().any(|line| line.starts_with(&resident)),
            "{resident} in:\n{metrics}"
        );
    }
    assert!(metrics.contains("# TYPE process_cpu_seconds_total counter"));
    // Every metric the shipped Grafana dashboard and Prometheus rules query is exposed.
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability");
    let queried = std::fs::read_to_string(deploy.join("grafana/dashboards/mimo.json")).unwrap()
        + &std::fs::read_to_string(deploy.join("alerts.yml")).unwrap();
    let exposed: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    let mut names = std::collections::BTreeSet::new();
    for (at, _) in queried.match_indices(['p', 'm']) {
        let rest = &queried[at..];
        if (rest.starts_with("process_") || rest.starts_with("mimo_"))
            && !queried[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    assert!(names.len() > 10, "{names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|name| !exposed.contains(name.as_str()))
        .collect();
    assert!(missing.is_empty(), "queried but not exposed: {missing:?}");
    let status = mimo.client_ok(&["status"]);
    assert!(
        status.contains("engrams_present memory.engrams on memory/"),
        "{status}"
    );
    let top = mimo.client_ok(&["top", "--iterations", "2", "--interval-ms", "100"]);
    assert_eq!(top.matches("SERVICE").count(), 2, "two refreshes: {top}");
    assert_eq!(top.matches("engrams_present").count(), 2, "{top}");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let channel = mimo_proto::connect::channel(&mimo.addresses.telemetry)
            .await
            .unwrap();
        let mut telemetry = mimo_proto::connect::telemetry(channel);
        let history = telemetry
            .query_history(mimo_proto::v1::QueryHistoryRequest {
                service: "memory".into(),
                metric: "memory.engr*".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(history.series.len(), 1, "{history:?}");
        let points = &history.series[0].points;
        assert!(!points.is_empty() && points.windows(2).all(|w| w[0].unix_ms <= w[1].unix_ms));
        assert_eq!(points.last().unwrap().value, 1.0);
        let refused = telemetry
            .query_history(mimo_proto::v1::QueryHistoryRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

        let mut watch = telemetry
            .watch_alerts(mimo_proto::v1::WatchAlertsRequest {
                service: "memory".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().expect("the firing alert");
        assert_eq!((first.name.as_str(), first.state), ("engrams_present", 1));
    });
    mimo.client_ok(&["memory", "delete", &id]);
    wait_until("the alert to resolve", PATIENCE, || {
        let body = http_get(&http, "/metrics")?;
        if body.contains("alert=\"engrams_present\"") {
            Err("still firing".to_string())
        } else {
            Ok(())
        }
    });
}

/// Runs headless Chromium on `url` with `args` (a fresh profile in `profile`); returns stdout.
fn chromium(profile: &Path, url: &str, args: &[&str]) -> String {
    let binary = required(&test_variables(), "MIMO_TEST_CHROMIUM").to_string();
    let mut command = Command::new(binary);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        // Lets the page's script fetch and draw before the DOM or the picture is taken.
        .arg("--virtual-time-budget=10000")
        .args(args)
        .arg(url)
        .stdin(Stdio::null());
    let output = run(command);
    assert!(
        output.status.success(),
        "chromium failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[test]
fn the_telemetry_page_shows_every_instance_charts_and_alerts_in_a_browser() {
    let (mimo, http) = with_engrams_alert(&serde_json::json!({"mcpServers": {}}), &[]);
    mimo.client_ok(&["memory", "store", "something to count"]);
    wait_until("four instances and the alert", PATIENCE, || {
        let instances: serde_json::Value =
            serde_json::from_str(&http_get(&http, "/api/instances")?).map_err(|e| e.to_string())?;
        let alerts = http_get(&http, "/api/alerts")?;
        let count = instances.as_array().map_or(0, Vec::len);
        if count == 4 && alerts.contains("engrams_present") {
            Ok(())
        } else {
            Err(format!("{count} instances; alerts {alerts}"))
        }
    });
    let url = format!("http://{http}/");
    let profile = tempfile::tempdir().expect("profile");
    let dom = chromium(profile.path(), &url, &["--dump-dom"]);
    for service in ["registry", "skill-host", "memory", "telemetry"] {
        assert!(
            dom.contains(&format!("data-service=\"{service}\"")),
            "no {service} row:\n{dom}"
        );
    }
    assert!(
        dom.contains("engrams_present"),
        "the alert is listed:\n{dom}"
    );
    assert!(
        dom.contains("4 instances, 1 alerts firing"),
        "the status line:\n{dom}"
    );
    assert_eq!(
        dom.matches("<canvas width=\"420\"").count(),
        4,
        "four charts drawn into the page:\n{dom}"
    );

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("telemetry-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1400",
        ],
    );
    let picture = std::fs::read(&shot).expect("the screenshot");
    assert!(picture.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        picture.len() > 20_000,
        "a page with content, not a blank: {} bytes",
        picture.len()
    );
    println!("screenshot: {}", shot.display());
}

#[test]
fn sigterm_stops_mimo_up_cleanly_and_ends_its_skills() {
    let mut mimo = Mimo::start();
    let processes = all_processes();
    let skills: BTreeMap<u32, ProcessInfo> = processes
        .into_iter()
        .filter(|(_, info)| info.parent == mimo.pid() && info.state != 'Z')
        .collect();
    assert_eq!(
        skills.len(),
        2,
        "mimo up should run one process per skill: {skills:?}"
    );
    // Each skill leads its own process group; whatever the skill started is in it too.
    let groups: Vec<u32> = skills.keys().copied().collect();
    let skill_trees: BTreeMap<u32, ProcessInfo> = all_processes()
        .into_iter()
        .filter(|(_, info)| groups.contains(&info.group) && info.state != 'Z')
        .collect();
    println!("skill processes (pid: info): {skill_trees:?}");

    let started = Instant::now();
    let status = mimo.stop(STOP_PATIENCE);
    let Some(status) = status else {
        panic!(
            "mimo up did not exit within {STOP_PATIENCE:?} of SIGTERM; log:\n{}",
            mimo.log()
        );
    };
    assert!(
        status.success(),
        "mimo up exited with {status}; log:\n{}",
        mimo.log()
    );
    println!("mimo up exited 0 {:?} after SIGTERM", started.elapsed());

    // Checked at once: mimo must have ended and reaped its skills before exiting itself.
    let left: Vec<(u32, ProcessInfo)> = skill_trees
        .iter()
        .filter(|(pid, seen)| still_running(**pid, seen))
        .map(|(pid, seen)| (*pid, seen.clone()))
        .collect();
    assert!(
        left.is_empty(),
        "skill processes outlived mimo up: {left:?}; log:\n{}",
        mimo.log()
    );
}

/// A registry client over TLS that trusts `ca` and presents `identity`, if any.
async fn tls_registry(
    address: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<mimo_proto::v1::registry_client::RegistryClient<tonic::transport::Channel>, String> {
    Ok(mimo_proto::v1::registry_client::RegistryClient::new(
        tls_channel(address, ca, identity).await?,
    ))
}

/// A channel over TLS that trusts `ca` and presents `identity`, if any.
async fn tls_channel(
    address: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::Channel, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).expect("read CA")))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).expect("read certificate"),
            std::fs::read(key).expect("read key"),
        ));
    }
    Endpoint::from_shared(format!("https://{address}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("TLS configuration")
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Lists the registry's tools, with `token` as a bearer token if given.
async fn list_tool_names(
    client: &mut mimo_proto::v1::registry_client::RegistryClient<tonic::transport::Channel>,
    token: Option<&str>,
) -> Result<Vec<String>, tonic::Status> {
    let mut request = tonic::Request::new(mimo_proto::v1::ListToolsRequest::default());
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
    }
    let tools = client.list_tools(request).await?.into_inner().tools;
    Ok(tools.into_iter().map(|tool| tool.name).collect())
}

#[test]
fn with_mutual_tls_only_certified_or_token_holding_clients_get_answers() {
    let folder = tempfile::tempdir().expect("tempdir");
    let certs = folder.path().join("certs");
    let mut make = mimo_command(folder.path());
    make.args(["certs", "dev", "--out"]).arg(&certs);
    let made = run(make);
    assert!(
        made.status.success(),
        "mimo certs dev: {}",
        text(&made.stderr)
    );
    let strangers = folder.path().join("other-certs");
    let mut make = mimo_command(folder.path());
    make.args(["certs", "dev", "--out"]).arg(&strangers);
    assert!(run(make).status.success());
    // A second run into the same folder refuses to overwrite.
    let mut again = mimo_command(folder.path());
    again.args(["certs", "dev", "--out"]).arg(&certs);
    let again = run(again);
    assert!(!again.status.success() && text(&again.stderr).contains("exists"));

    let tokens = folder.path().join("tokens.txt");
    std::fs::write(
        &tokens,
        "# who may call without a certificate
right-token-1
",
    )
    .unwrap();
    let path = |name: &str| certs.join(name).display().to_string();
    let env = [
        ("MIMO_TLS_CERT", path("server.pem")),
        ("MIMO_TLS_KEY", path("server-key.pem")),
        ("MIMO_TLS_CA", path("ca.pem")),
        ("MIMO_ACCEPT_TOKENS", tokens.display().to_string()),
        ("MIMO_TELEMETRY_HTTP_LISTEN", "off".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let variables = test_variables();
    let skills = serde_json::json!({"mcpServers": {"time": server_entry(&variables, "TIME")}});
    let data = folder.path().join("data");
    // Every hop (skill-host to registry, reports to telemetry, the CLI's calls) runs over
    // mutual TLS: `launch_with` returns once `mimo tools list` shows the tool.
    let mimo = Mimo::launch_with(
        tempfile::tempdir().expect("tempdir"),
        &skills,
        &data,
        &["time_get_current_time"],
        &[],
        &env,
    );
    let status = mimo.client_ok(&["status"]);
    assert!(status.contains("skill-host"), "status over TLS: {status}");
    // `mimo health` (what a probe runs) checks the configured services over TLS too.
    let health = mimo.client_ok(&["health"]);
    assert_eq!(
        health.matches(" SERVING").count(),
        4,
        "every service SERVING: {health}"
    );
    let down = mimo.client(&["health", &mimo.addresses.memory, "127.0.0.1:1"]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down.stdout));
    assert!(text(&down.stdout).contains("127.0.0.1:1 UNREACHABLE"));

    // A plaintext client gets nothing: nothing listens in plaintext.
    let mut plain = mimo_command(mimo.folder.path());
    plain
        .args(["tools", "list"])
        .args(["--registry-address", &mimo.addresses.registry]);
    let plain = run(plain);
    assert!(
        !plain.status.success() && !text(&plain.stdout).contains("time_get_current_time"),
        "a plaintext client was answered: {} {}",
        text(&plain.stdout),
        text(&plain.stderr)
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let address = &mimo.addresses.registry;
        let ca = certs.join("ca.pem");
        // TLS without a client certificate: UNAUTHENTICATED unless it brings a token.
        let mut anonymous = tls_registry(address, &ca, None)
            .await
            .expect("TLS handshake");
        let refused = list_tool_names(&mut anonymous, None).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains("certificate"), "{refused:?}");
        let wrong = list_tool_names(&mut anonymous, Some("wrong-token"))
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong:?}");
        let names = list_tool_names(&mut anonymous, Some("right-token-1"))
            .await
            .expect("a client with an accepted token is answered");
        assert!(
            names.iter().any(|n| n == "time_get_current_time"),
            "{names:?}"
        );
        // Probes need no credentials; the health service tells nothing else.
        let mut health = tonic_health::pb::health_client::HealthClient::new(
            tls_channel(address, &ca, None)
                .await
                .expect("TLS handshake"),
        );
        let serving = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health answers without credentials")
            .into_inner();
        assert_eq!(
            serving.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        // The client certificate `mimo certs dev` made for clients is enough on its own.
        let mut certified = tls_registry(
            address,
            &ca,
            Some((&certs.join("client.pem"), &certs.join("client-key.pem"))),
        )
        .await
        .expect("TLS handshake with a client certificate");
        let names = list_tool_names(&mut certified, None)
            .await
            .expect("a certified client is answered");
        assert!(
            names.iter().any(|n| n == "time_get_current_time"),
            "{names:?}"
        );

        // A certificate from another CA does not get past the handshake.
        let stranger = match tls_registry(
            address,
            &ca,
            Some((
                &strangers.join("client.pem"),
                &strangers.join("client-key.pem"),
            )),
        )
        .await
        {
            Err(error) => Err(error),
            Ok(mut client) => list_tool_names(&mut client, None)
                .await
                .map_err(|status| format!("{status:?}")),
        };
        assert!(
            stranger.is_err(),
            "a client certified by another CA was answered: {stranger:?}"
        );
    });
}

#[test]
fn invalid_skills_file_fails_before_binding_with_a_clear_message() {
    let folder = tempfile::tempdir().expect("tempdir");
    let skills_file = folder.path().join("skills.json");
    std::fs::write(
        &skills_file,
        r#"{"mcpServers": {"broken": {"command": "true", "argz": []}}}"#,
    )
    .unwrap();
    // Holding a port and asking mimo to listen on it shows whether it binds before validating:
    // it would then fail with "cannot listen" instead of naming the skill.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let held_address = held.local_addr().unwrap().to_string();
    let ready_file = folder.path().join("ready.json");
    let data_dir = folder.path().join("data");
    let mut command = mimo_command(folder.path());
    command
        .args(["up", "--ready-file"])
        .arg(&ready_file)
        .args(["--registry-listen", &held_address])
        .args(["--skill-host-listen", "127.0.0.1:0"])
        .args(["--memory-listen", "127.0.0.1:0"])
        .args(["--telemetry-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--skills")
        .arg(&skills_file);
    let output = run(command);
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "mimo up accepted an unknown skill field; stderr: {stderr}"
    );
    assert!(
        stderr.contains("\"broken\"") && stderr.contains("argz"),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot listen"), "{stderr}");
    assert!(!ready_file.exists(), "the ready file was written");
    assert!(!data_dir.exists(), "the data folder was created");
    let message: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(message.len(), 1, "one clear error line expected: {stderr}");
    println!("{}", message[0]);
}

#[test]
fn print_config_shows_flags_over_environment_over_file_over_defaults() {
    let folder = tempfile::tempdir().expect("tempdir");
    let config = folder.path().join("mimo.toml");
    std::fs::write(
        &config,
        "lease_ttl_ms = 3000\nreport_interval_ms = 700\nskill_init_timeout_ms = 4000\n",
    )
    .unwrap();
    let mut command = mimo_command(folder.path());
    command
        .arg("--config")
        .arg(&config)
        .env("MIMO_LEASE_TTL_MS", "5000")
        .env("MIMO_REPORT_INTERVAL_MS", "800")
        .args(["--print-config", "--lease-ttl-ms", "7000"]);
    let output = run(command);
    let printed = text(&output.stdout);
    assert!(output.status.success(), "{printed}{}", text(&output.stderr));
    let lines: Vec<&str> = printed.lines().collect();
    for expected in [
        "lease_ttl_ms = 7000",                 // flag beats environment and file
        "report_interval_ms = 800",            // environment beats file
        "skill_init_timeout_ms = 4000",        // file beats default
        "memory_listen = \"127.0.0.1:50053\"", // default
    ] {
        assert!(
            lines.contains(&expected),
            "expected {expected:?} in:\n{printed}"
        );
    }

    // Without the flag the environment wins; without both the file does.
    let mut command = mimo_command(folder.path());
    command
        .arg("--config")
        .arg(&config)
        .env("MIMO_LEASE_TTL_MS", "5000")
        .arg("--print-config");
    assert!(text(&run(command).stdout)
        .lines()
        .any(|l| l == "lease_ttl_ms = 5000"));
    let mut command = mimo_command(folder.path());
    command.arg("--config").arg(&config).arg("--print-config");
    assert!(text(&run(command).stdout)
        .lines()
        .any(|l| l == "lease_ttl_ms = 3000"));
}

#[test]
fn invalid_config_file_fails_with_one_line_naming_the_key() {
    let folder = tempfile::tempdir().expect("tempdir");
    let config = folder.path().join("mimo.toml");
    std::fs::write(&config, "lease_tll_ms = 3000\n").unwrap();
    let mut command = mimo_command(folder.path());
    command.arg("--config").arg(&config).arg("--print-config");
    let output = run(command);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("lease_tll_ms"),
        "{stderr}"
    );
}

#[test]
fn a_killed_mimo_up_takes_its_skills_along_and_the_next_run_ends_what_was_left() {
    let variables = test_variables();
    let everything = server_entry(&variables, "EVERYTHING");
    // A launcher that outlives its server's stdin (it waits for its children), leaving a
    // grandchild in the skill's process group, as npx and uvx can.
    let mut launcher = vec![everything["command"].as_str().unwrap().to_string()];
    for arg in everything["args"].as_array().unwrap() {
        launcher.push(arg.as_str().unwrap().to_string());
    }
    let script = "sleep 600 & \"$@\"; wait".to_string();
    let mut args = vec![
        serde_json::json!("-c"),
        serde_json::json!(script),
        serde_json::json!("sh"),
    ];
    args.extend(launcher.into_iter().map(serde_json::Value::from));
    let skills = serde_json::json!({"mcpServers": {
        "everything": {"command": "sh", "args": args},
    }});
    let data = tempfile::tempdir().expect("data folder");
    let mut first = Mimo::launch(
        tempfile::tempdir().expect("tempdir"),
        &skills,
        data.path(),
        &["everything_echo"],
    );
    let processes = all_processes();
    let (skill_pid, skill) = processes
        .iter()
        .find(|(_, info)| info.parent == first.pid() && info.state != 'Z')
        .map(|(pid, info)| (*pid, info.clone()))
        .expect("the skill's process");
    let (grandchild_pid, grandchild) = processes
        .iter()
        .find(|(pid, info)| info.group == skill_pid && **pid != skill_pid && info.state != 'Z')
        .map(|(pid, info)| (*pid, info.clone()))
        .expect("the launcher's grandchild");

    first.child.kill().expect("SIGKILL mimo up");
    first.exit = Some(first.child.wait().expect("reap mimo up"));
    wait_until("the parent-death signal ends the skill", PATIENCE, || {
        if still_running(skill_pid, &skill) {
            Err(format!("skill {skill_pid} still runs"))
        } else {
            Ok(())
        }
    });

    let second = Mimo::launch(
        tempfile::tempdir().expect("tempdir"),
        &skills,
        data.path(),
        &["everything_echo"],
    );
    wait_until(
        "the next run ends the grandchild left behind",
        PATIENCE,
        || {
            if still_running(grandchild_pid, &grandchild) {
                Err(format!("grandchild {grandchild_pid} still runs"))
            } else {
                Ok(())
            }
        },
    );
    assert!(
        second
            .log()
            .contains("ended the skill processes a previous run of this host left behind"),
        "{}",
        second.log()
    );
}

/// A child process killed (SIGKILL) and reaped when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Public tool names `mimo tools list` prints, or why it could not list them.
fn listed_tools(folder: &Path, registry: &str) -> Result<Vec<String>, String> {
    let mut command = mimo_command(folder);
    command.args(["tools", "list", "--registry-address", registry]);
    let listed = run(command);
    if !listed.status.success() {
        return Err(format!("{}: {}", listed.status, text(&listed.stderr)));
    }
    Ok(text(&listed.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect())
}

#[test]
fn a_killed_registry_has_every_tool_back_within_two_heartbeats_of_its_restart() {
    registry_restart(None);
}

#[test]
fn a_killed_registry_on_etcd_restarts_with_every_tool_still_there() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let etcd = runtime.block_on(mimo_integration_tests::EtcdServer::start());
    registry_restart(Some(&format!("etcd://{}", etcd.address())));
}

/// Kills the registry a skill-host registered with and starts it again on the same port;
/// with `store`, the registry keeps its state there.
fn registry_restart(store: Option<&str>) {
    let variables = test_variables();
    let folder = tempfile::tempdir().expect("tempdir");
    let skills_file = folder.path().join("skills.json");
    let skills = serde_json::json!({"mcpServers": {
        "everything": server_entry(&variables, "EVERYTHING"),
        "time": server_entry(&variables, "TIME"),
    }});
    std::fs::write(&skills_file, skills.to_string()).expect("write skills file");
    let registry = format!("127.0.0.1:{}", free_loopback_port());
    let heartbeat = Duration::from_secs(2);
    let lease_ttl_ms = (heartbeat * 3).as_millis().to_string();
    let start_registry = |log_name: &str| {
        let log = std::fs::File::create(folder.path().join(log_name)).expect("log file");
        let mut command = mimo_command(folder.path());
        command
            .args(["registry", "--registry-listen", &registry])
            .args(["--telemetry-address", "127.0.0.1:1"])
            .args(["--registry-store", store.unwrap_or("memory")])
            .stdout(Stdio::null())
            .stderr(log);
        KillOnDrop(command.spawn().expect("spawn mimo registry"))
    };
    let mut first_registry = start_registry("registry-1.log");
    let host_log = std::fs::File::create(folder.path().join("skill-host.log")).expect("log");
    let mut command = mimo_command(folder.path());
    command
        .args(["skill-host", "--skill-host-listen", "127.0.0.1:0"])
        .args(["--registry-address", &registry])
        .args(["--telemetry-address", "127.0.0.1:1"])
        .args(["--lease-ttl-ms", &lease_ttl_ms])
        .arg("--skills")
        .arg(&skills_file)
        .arg("--data-dir")
        .arg(folder.path().join("data"))
        .stdout(Stdio::null())
        .stderr(host_log);
    let _host = KillOnDrop(command.spawn().expect("spawn mimo skill-host"));
    let host_log = || std::fs::read_to_string(folder.path().join("skill-host.log")).unwrap();

    let before = wait_until("both skills' tools registered", PATIENCE, || {
        let tools = listed_tools(folder.path(), &registry)?;
        let has = |prefix: &str| tools.iter().any(|name| name.starts_with(prefix));
        if has("everything_") && has("time_") {
            Ok(tools)
        } else {
            Err(format!("listed: {tools:?}"))
        }
    });

    first_registry.0.kill().expect("SIGKILL the registry");
    first_registry.0.wait().expect("reap the registry");
    let gone = listed_tools(folder.path(), &registry).expect_err("no registry is listening");
    assert!(gone.contains("cannot reach"), "{gone}");

    let _second_registry = start_registry("registry-2.log");
    let listening = wait_until("the new registry to listen", PATIENCE, || {
        std::net::TcpStream::connect(&registry)
            .map(|_| Instant::now())
            .map_err(|e| e.to_string())
    });
    let after = wait_until("every tool back in the new registry", PATIENCE, || {
        let tools = listed_tools(folder.path(), &registry)?;
        if tools == before {
            Ok(tools)
        } else {
            Err(format!("listed: {tools:?}"))
        }
    });
    let back_after = listening.elapsed();
    eprintln!(
        "{} tools back {back_after:?} after the registry listened again",
        after.len()
    );
    assert_eq!(after, before);
    if store.is_some() {
        assert!(
            !host_log().contains("registering the skill again"),
            "the leases lived on in etcd; nothing had to register again:\n{}",
            host_log()
        );
    }
    assert!(
        back_after <= heartbeat * 2,
        "tools came back {back_after:?} after the registry listened; heartbeats go every \
         {heartbeat:?}\n{}",
        host_log()
    );
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

#[test]
fn a_paused_skill_host_learns_its_leases_expired_and_registers_again() {
    let variables = test_variables();
    let folder = tempfile::tempdir().expect("tempdir");
    let skills_file = folder.path().join("skills.json");
    let skills = serde_json::json!({"mcpServers": {"time": server_entry(&variables, "TIME")}});
    std::fs::write(&skills_file, skills.to_string()).expect("write skills file");
    let registry = format!("127.0.0.1:{}", free_loopback_port());
    let log = std::fs::File::create(folder.path().join("registry.log")).expect("log file");
    let mut command = mimo_command(folder.path());
    command
        .args(["registry", "--registry-listen", &registry])
        .args(["--telemetry-address", "127.0.0.1:1"])
        .stdout(Stdio::null())
        .stderr(log);
    let _registry = KillOnDrop(command.spawn().expect("spawn mimo registry"));
    let host_log_path = folder.path().join("skill-host.log");
    let mut command = mimo_command(folder.path());
    command
        .args(["skill-host", "--skill-host-listen", "127.0.0.1:0"])
        .args(["--registry-address", &registry])
        .args(["--telemetry-address", "127.0.0.1:1"])
        .args(["--lease-ttl-ms", "2000"])
        .arg("--skills")
        .arg(&skills_file)
        .arg("--data-dir")
        .arg(folder.path().join("data"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&host_log_path).expect("log"));
    let host = KillOnDrop(command.spawn().expect("spawn mimo skill-host"));
    let host_log = || std::fs::read_to_string(&host_log_path).unwrap_or_default();
    let has_time_tools = |tools: &[String]| tools.iter().any(|name| name.starts_with("time_"));
    wait_until("the time skill's tools registered", PATIENCE, || {
        let tools = listed_tools(folder.path(), &registry)?;
        has_time_tools(&tools)
            .then_some(())
            .ok_or(format!("{tools:?}"))
    });

    // A pause longer than the lease TTL: the registry lets the host's leases expire.
    send_signal(host.0.id(), "STOP");
    wait_until("the paused host's tools to expire", PATIENCE, || {
        let tools = listed_tools(folder.path(), &registry)?;
        (!has_time_tools(&tools))
            .then_some(())
            .ok_or(format!("still listed: {tools:?}"))
    });
    send_signal(host.0.id(), "CONT");
    wait_until(
        "the host to register again after its pause",
        PATIENCE,
        || {
            let tools = listed_tools(folder.path(), &registry)?;
            has_time_tools(&tools)
                .then_some(())
                .ok_or(format!("{tools:?}"))
        },
    );
    assert!(
        host_log().contains("registry lease expired; registering the skill again"),
        "the host learnt of the expiry from a heartbeat's answer:\n{}",
        host_log()
    );
}

#[test]
fn a_skill_host_given_two_replicas_keeps_its_tools_when_one_dies() {
    let variables = test_variables();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let etcd = runtime.block_on(mimo_integration_tests::EtcdServer::start());
    let store = format!("etcd://{}", etcd.address());
    let folder = tempfile::tempdir().expect("tempdir");
    let skills_file = folder.path().join("skills.json");
    let skills = serde_json::json!({"mcpServers": {"time": server_entry(&variables, "TIME")}});
    std::fs::write(&skills_file, skills.to_string()).expect("write skills file");
    let replica = |name: &str| {
        let address = format!("127.0.0.1:{}", free_loopback_port());
        let log = std::fs::File::create(folder.path().join(format!("{name}.log"))).expect("log");
        let mut command = mimo_command(folder.path());
        command
            .args(["registry", "--registry-listen", &address])
            .args(["--telemetry-address", "127.0.0.1:1"])
            .args(["--registry-store", &store])
            .stdout(Stdio::null())
            .stderr(log);
        (
            address,
            KillOnDrop(command.spawn().expect("spawn mimo registry")),
        )
    };
    let (first, mut first_process) = replica("registry-1");
    let (second, _second_process) = replica("registry-2");
    let ttl = Duration::from_secs(3);
    let mut command = mimo_command(folder.path());
    command
        .args(["skill-host", "--skill-host-listen", "127.0.0.1:0"])
        .args(["--registry-address", &format!("{first},{second}")])
        .args(["--telemetry-address", "127.0.0.1:1"])
        .args(["--lease-ttl-ms", &ttl.as_millis().to_string()])
        .arg("--skills")
        .arg(&skills_file)
        .arg("--data-dir")
        .arg(folder.path().join("data"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(folder.path().join("skill-host.log")).expect("log"));
    let _host = KillOnDrop(command.spawn().expect("spawn mimo skill-host"));
    let listed_at_second = || listed_tools(folder.path(), &second);
    let before = wait_until("the tools at the second replica", PATIENCE, || {
        let tools = listed_at_second()?;
        (!tools.is_empty())
            .then_some(tools)
            .ok_or("none yet".to_string())
    });

    first_process.0.kill().expect("SIGKILL the first replica");
    first_process.0.wait().expect("reap it");
    // For two lease TTLs after the loss, the tools never leave: the host's heartbeats moved
    // to the second replica before its leases could expire in etcd.
    let lost_at = Instant::now();
    while lost_at.elapsed() < ttl * 2 {
        let tools = listed_at_second().expect("the second replica answers");
        assert_eq!(
            tools,
            before,
            "tools changed {:?} after the first replica died; host log:\n{}",
            lost_at.elapsed(),
            std::fs::read_to_string(folder.path().join("skill-host.log")).unwrap_or_default()
        );
    }
    let log = std::fs::read_to_string(folder.path().join("skill-host.log")).unwrap_or_default();
    assert!(log.contains(&format!("next_registry={second}")), "{log}");
}

#[test]
fn a_second_memory_process_on_the_same_database_is_refused_naming_the_first() {
    let folder = tempfile::tempdir().expect("tempdir");
    let database = folder.path().join("memory.sqlite");
    let log_path = folder.path().join("memory-1.log");
    let mut command = mimo_command(folder.path());
    command
        .args(["memory", "--memory-listen", "127.0.0.1:0"])
        .args(["--telemetry-address", "127.0.0.1:1"])
        .arg("--database")
        .arg(&database)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"));
    let first = KillOnDrop(command.spawn().expect("spawn mimo memory"));
    wait_until(
        "the first memory process to open its database",
        PATIENCE,
        || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            log.contains("memory open").then_some(()).ok_or(log)
        },
    );

    let mut second = mimo_command(folder.path());
    second
        .args(["memory", "--memory-listen", "127.0.0.1:0"])
        .args(["--telemetry-address", "127.0.0.1:1"])
        .arg("--database")
        .arg(&database);
    let refused = run(second);
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "in use by another Mimo memory process (pid {})",
            first.0.id()
        )),
        "{stderr}"
    );
}

#[test]
fn every_acknowledged_engram_survives_a_sigkill_of_the_memory_service() {
    let folder = tempfile::tempdir().expect("tempdir");
    let database = folder.path().join("memory.sqlite");
    let address = format!("127.0.0.1:{}", free_loopback_port());
    let start_memory = |log_name: &str| {
        let log_path = folder.path().join(log_name);
        let mut command = mimo_command(folder.path());
        command
            .args(["memory", "--memory-listen", &address])
            .args(["--telemetry-address", "127.0.0.1:1"])
            .arg("--database")
            .arg(&database)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log"));
        let process = KillOnDrop(command.spawn().expect("spawn mimo memory"));
        wait_until("the memory service to listen", PATIENCE, || {
            std::net::TcpStream::connect(&address)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        process
    };
    let mut first = start_memory("memory-1.log");

    // Stores one engram after another until the service is gone; keeps each acknowledged id.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let storer = {
        let acknowledged = acknowledged.clone();
        let folder = folder.path().to_path_buf();
        let address = address.clone();
        std::thread::spawn(move || {
            for index in 0.. {
                let mut command = mimo_command(&folder);
                let content = format!("engram number {index} about topic{index}");
                command.args(["memory", "store", &content, "--memory-address", &address]);
                let stored = run(command);
                if !stored.status.success() {
                    return;
                }
                let id = text(&stored.stdout).trim().to_string();
                acknowledged.lock().unwrap().push((id, content));
            }
        })
    };
    wait_until("twenty acknowledged stores", PATIENCE, || {
        let count = acknowledged.lock().unwrap().len();
        (count >= 20).then_some(()).ok_or(format!("{count} so far"))
    });
    first.0.kill().expect("SIGKILL the memory service");
    first.0.wait().expect("reap it");
    storer
        .join()
        .expect("the storing thread ends once the service is gone");

    let _second = start_memory("memory-2.log");
    let acknowledged = acknowledged.lock().unwrap().clone();
    for (id, content) in &acknowledged {
        let mut command = mimo_command(folder.path());
        command.args(["memory", "get", id, "--memory-address", &address]);
        let got = run(command);
        assert!(got.status.success(), "{id}: {}", text(&got.stderr));
        assert!(
            text(&got.stdout).contains(content.as_str()),
            "{id}: {}",
            text(&got.stdout)
        );
    }
    let (last_id, last_content) = acknowledged.last().expect("some stores");
    let mut command = mimo_command(folder.path());
    command.args([
        "memory",
        "search",
        last_content,
        "--limit",
        "1",
        "--memory-address",
        &address,
    ]);
    let found = run(command);
    assert!(
        text(&found.stdout).contains(last_id.as_str()),
        "{}",
        text(&found.stdout)
    );
}

/// Starts `mimo memory` on `database`, listening on `address`, logging to `log_name`.
fn start_memory_process(
    folder: &Path,
    database: &Path,
    address: &str,
    log_name: &str,
) -> KillOnDrop {
    let log_path = folder.join(log_name);
    let mut command = mimo_command(folder);
    command
        .args(["memory", "--memory-listen", address])
        .args(["--telemetry-address", "127.0.0.1:1"])
        .arg("--database")
        .arg(database)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"));
    let process = KillOnDrop(command.spawn().expect("spawn mimo memory"));
    wait_until("the memory service to listen", PATIENCE, || {
        std::net::TcpStream::connect(address)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    process
}

/// Runs `mimo memory ARGS --memory-address ADDRESS` in `folder`.
fn memory_client(folder: &Path, address: &str, args: &[&str]) -> Output {
    let mut command = mimo_command(folder);
    command
        .arg("memory")
        .args(args)
        .args(["--memory-address", address]);
    run(command)
}

#[test]
fn jsonl_import_and_export_round_trip_and_a_bad_line_is_named() {
    let folder = tempfile::tempdir().expect("tempdir");
    let database = folder.path().join("memory.sqlite");
    let address = format!("127.0.0.1:{}", free_loopback_port());
    let _memory = start_memory_process(folder.path(), &database, &address, "memory.log");
    let lines = [
        r#"{"content": "the boiler is serviced every october", "category": "procedure", "importance": 0.8}"#,
        r#"{"content": "anna prefers window seats on trains", "metadata": {"source": "chat"}}"#,
        r#"{"content": "buy new walking boots before spring", "category": "plan", "protected": true}"#,
    ];
    let import_file = folder.path().join("in.jsonl");
    std::fs::write(&import_file, lines.join("\n") + "\n").expect("write import file");
    let imported = memory_client(
        folder.path(),
        &address,
        &["import", import_file.to_str().unwrap()],
    );
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(
        text(&imported.stdout).contains("stored 3 engrams"),
        "{}",
        text(&imported.stdout)
    );

    let stats = memory_client(folder.path(), &address, &["stats"]);
    let stats = text(&stats.stdout);
    assert!(stats.contains("engrams:      3"), "{stats}");
    assert!(stats.contains("procedure   1"), "{stats}");
    assert!(
        stats.contains("builtin-hash-v1 (2048 dimensions)"),
        "{stats}"
    );

    let export_file = folder.path().join("out.jsonl");
    let exported = memory_client(
        folder.path(),
        &address,
        &["export", export_file.to_str().unwrap()],
    );
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let written = std::fs::read_to_string(&export_file).expect("export file");
    let rows: Vec<serde_json::Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["content"], "the boiler is serviced every october");
    assert_eq!(rows[0]["category"], "procedure");
    assert!((rows[0]["importance"].as_f64().unwrap() - 0.8).abs() < 1e-6);
    assert_eq!(rows[1]["metadata"]["source"], "chat");
    assert_eq!(rows[2]["protected"], true);

    // Into a second memory: the export imports as it is.
    let second_database = folder.path().join("second.sqlite");
    let second_address = format!("127.0.0.1:{}", free_loopback_port());
    let _second = start_memory_process(
        folder.path(),
        &second_database,
        &second_address,
        "second.log",
    );
    let again = memory_client(
        folder.path(),
        &second_address,
        &["import", export_file.to_str().unwrap()],
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    let listed = memory_client(
        folder.path(),
        &second_address,
        &["list", "--order", "important"],
    );
    let listed = text(&listed.stdout);
    assert!(
        listed
            .lines()
            .next()
            .unwrap_or_default()
            .contains("the boiler is serviced"),
        "{listed}"
    );

    // A bad line stops the import there and names it; the lines before it are stored.
    let bad_file = folder.path().join("bad.jsonl");
    std::fs::write(
        &bad_file,
        // A blank line is skipped; the line numbers still count it.
        format!(
            "{}\n\n{}\n",
            r#"{"content": "a good first line about owls"}"#, r#"{"content": "   "}"#
        ),
    )
    .expect("write bad file");
    let refused = memory_client(
        folder.path(),
        &second_address,
        &["import", bad_file.to_str().unwrap()],
    );
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("bad.jsonl line 3: request 2 of the stream: content is empty; the 1 engrams before it are stored"),
        "{stderr}"
    );
    let stats = text(&memory_client(folder.path(), &second_address, &["stats"]).stdout);
    assert!(stats.contains("engrams:      4"), "{stats}");
}
