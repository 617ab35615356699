//! A test MCP server (stdio) that misbehaves on purpose, so the skill-host's handling of
//! every fault can be tested against a real process. Faults are chosen by arguments:
//!
//! - `--crash-after N`: exit with status 1 on the call after N answered calls.
//! - `--slow-initialize-ms MS` / `--hang-initialize`: delay or never answer `initialize`.
//! - `--stderr-lines N`: write N lines to stderr at start (a chatty skill).
//! - `--stderr-every-ms MS`: write a stderr line every MS milliseconds (a busy launcher).
//! - `--stderr-long-line BYTES`: write one stderr line of that size at start.
//! - `--flood-stdout N`: write N non-JSON lines to stdout at start.
//! - `--noise`: write a non-JSON line before every answer.
//!
//! Tools: `echo {text}`, `sleep {ms}` (answers later, so answers come out of order),
//! `big {bytes}` (one answer line of that size), `exit {code}` (exits without answering),
//! `spawn` (starts a grandchild that ignores SIGTERM; answers with its pid), `spawn_detached`
//! (the same, in a session of its own, outside the skill's process group),
//! `ping_host` (sends the host a `ping` request and answers with the host's reply),
//! `pid` (answers with this process's id, to tell instances apart), `ask_host {method}`
//! (sends the host a request of that method and answers with the host's reply),
//! `grow` (adds a tool `extra`, then tells the host with `notifications/tools/list_changed`),
//! `cancellations` (answers with the request ids the host has cancelled so far).

use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Senders waiting for the host's answers to this server's own requests, by request id.
type HostAnswers = Arc<Mutex<Vec<(i64, mpsc::Sender<Value>)>>>;

#[derive(Default)]
struct Faults {
    crash_after: Option<u64>,
    slow_initialize_ms: u64,
    hang_initialize: bool,
    stderr_lines: u64,
    stderr_every_ms: u64,
    stderr_long_line: u64,
    flood_stdout: u64,
    noise: bool,
}

fn parse_faults() -> Faults {
    let mut faults = Faults::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--crash-after" => faults.crash_after = Some(number()),
            "--slow-initialize-ms" => faults.slow_initialize_ms = number(),
            "--stderr-lines" => faults.stderr_lines = number(),
            "--stderr-every-ms" => faults.stderr_every_ms = number(),
            "--stderr-long-line" => faults.stderr_long_line = number(),
            "--flood-stdout" => faults.flood_stdout = number(),
            "--hang-initialize" => faults.hang_initialize = true,
            "--noise" => faults.noise = true,
            other => panic!("unknown argument {other}"),
        }
    }
    faults
}

struct Output {
    stdout: Mutex<std::io::Stdout>,
    noise: bool,
}

impl Output {
    fn send(&self, message: &Value) {
        let mut stdout = self.stdout.lock().unwrap();
        if self.noise {
            let _ = writeln!(stdout, "this line is not JSON-RPC");
        }
        let _ = writeln!(stdout, "{message}");
        let _ = stdout.flush();
    }
}

fn tools() -> Value {
    let object = |properties: Value| json!({"type": "object", "properties": properties});
    json!([
        {"name": "echo", "description": "Answers with its text", "inputSchema": object(json!({"text": {"type": "string"}}))},
        {"name": "sleep", "description": "Answers after ms milliseconds", "inputSchema": object(json!({"ms": {"type": "number"}}))},
        {"name": "big", "description": "Answers with a text of the given size", "inputSchema": object(json!({"bytes": {"type": "number"}}))},
        {"name": "exit", "description": "Exits without answering", "inputSchema": object(json!({"code": {"type": "number"}}))},
        {"name": "spawn", "description": "Starts a grandchild that ignores SIGTERM", "inputSchema": object(json!({}))},
        {"name": "spawn_detached", "description": "Starts a grandchild outside the process group", "inputSchema": object(json!({}))},
        {"name": "ping_host", "description": "Pings the host", "inputSchema": object(json!({}))},
        {"name": "pid", "description": "Answers with its process id", "inputSchema": object(json!({}))},
        {"name": "ask_host", "description": "Sends the host a request", "inputSchema": object(json!({"method": {"type": "string"}}))},
        {"name": "grow", "description": "Adds a tool", "inputSchema": object(json!({}))},
        {"name": "cancellations", "description": "Lists cancelled request ids", "inputSchema": object(json!({}))},
    ])
}

fn text_result(id: &Value, text: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}})
}

fn main() {
    let faults = parse_faults();
    if faults.stderr_long_line > 0 {
        eprintln!("{}", "e".repeat(faults.stderr_long_line as usize));
    }
    for line in 0..faults.stderr_lines {
        eprintln!("chatty skill, stderr line {line}");
    }
    if faults.stderr_every_ms > 0 {
        let every = Duration::from_millis(faults.stderr_every_ms);
        std::thread::spawn(move || {
            for tick in 0.. {
                eprintln!("still working, tick {tick}");
                std::thread::sleep(every);
            }
        });
    }
    for line in 0..faults.flood_stdout {
        println!("flooding stdout with line {line}, which is not JSON-RPC");
    }
    let output = Arc::new(Output {
        stdout: Mutex::new(std::io::stdout()),
        noise: faults.noise,
    });
    let answered = Arc::new(AtomicU64::new(0));
    // Answers from the host to our own requests (ping_host), by id.
    let host_answers: HostAnswers = Arc::default();
    let next_own_id = AtomicU64::new(1_000_000);
    let grown = std::sync::atomic::AtomicBool::new(false);
    let cancelled: Mutex<Vec<Value>> = Mutex::new(Vec::new());
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if method.is_empty() {
            // An answer to one of our requests.
            let mut waiting = host_answers.lock().unwrap();
            if let Some(position) = waiting
                .iter()
                .position(|(own, _)| Some(*own) == id.as_i64())
            {
                let (_, sender) = waiting.remove(position);
                let _ = sender.send(message.clone());
            }
            continue;
        }
        match method {
            "initialize" => {
                if faults.hang_initialize {
                    continue;
                }
                std::thread::sleep(Duration::from_millis(faults.slow_initialize_ms));
                output.send(&json!({"jsonrpc": "2.0", "id": id, "result": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {"tools": {"listChanged": true}},
                    "serverInfo": {"name": "misbehaving-skill", "version": "1.0.0"}
                }}));
            }
            "tools/list" => {
                let mut listed = tools();
                if grown.load(Ordering::SeqCst) {
                    listed.as_array_mut().unwrap().push(json!({"name": "extra", "description": "Added at run time", "inputSchema": {"type": "object"}}));
                }
                output.send(&json!({"jsonrpc": "2.0", "id": id, "result": {"tools": listed}}));
            }
            "notifications/cancelled" => {
                if let Some(request) = message.get("params").and_then(|p| p.get("requestId")) {
                    cancelled.lock().unwrap().push(request.clone());
                }
            }
            "tools/call" => {
                if let Some(limit) = faults.crash_after {
                    if answered.load(Ordering::SeqCst) >= limit {
                        eprintln!("crashing after {limit} calls as asked");
                        std::process::exit(1);
                    }
                }
                let params = message.get("params").cloned().unwrap_or_default();
                let name = params.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                let arguments = params.get("arguments").cloned().unwrap_or_default();
                let number = |key: &str| arguments.get(key).and_then(Value::as_u64).unwrap_or(0);
                match name.as_str() {
                    "echo" => {
                        let text = arguments.get("text").and_then(Value::as_str).unwrap_or_default();
                        output.send(&text_result(&id, text.to_string()));
                    }
                    "sleep" => {
                        let output = output.clone();
                        let ms = number("ms");
                        let answered = answered.clone();
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_millis(ms));
                            output.send(&text_result(&id, format!("slept {ms} ms")));
                            answered.fetch_add(1, Ordering::SeqCst);
                        });
                        continue;
                    }
                    "grow" => {
                        grown.store(true, Ordering::SeqCst);
                        output.send(&text_result(&id, "grown".to_string()));
                        output.send(&json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
                    }
                    "cancellations" => {
                        let ids = cancelled.lock().unwrap().clone();
                        output.send(&text_result(&id, Value::from(ids).to_string()));
                    }
                    "pid" => output.send(&text_result(&id, std::process::id().to_string())),
                    "big" => output.send(&text_result(&id, "x".repeat(number("bytes") as usize))),
                    "exit" => {
                        let code = number("code") as i32;
                        eprintln!("exiting with status {code} in the middle of a call");
                        std::process::exit(code);
                    }
                    "spawn" | "spawn_detached" => {
                        let (program, prefix): (&str, &[&str]) = if name == "spawn" { ("sh", &[]) } else { ("setsid", &["sh"]) };
                        // Left running on purpose: the host must end it with the group.
                        #[allow(clippy::zombie_processes)]
                        let child = std::process::Command::new(program)
                            .args(prefix)
                            .args(["-c", "trap '' TERM; while true; do sleep 1; done"])
                            .stdin(std::process::Stdio::null())
                            .stdout(std::process::Stdio::null())
                            .spawn()
                            .expect("spawn grandchild");
                        output.send(&text_result(&id, child.id().to_string()));
                    }
                    "ping_host" | "ask_host" => {
                        let asked = arguments.get("method").and_then(Value::as_str).unwrap_or("ping").to_string();
                        let own = next_own_id.fetch_add(1, Ordering::SeqCst) as i64;
                        let (sender, receiver) = mpsc::channel();
                        host_answers.lock().unwrap().push((own, sender));
                        output.send(&json!({"jsonrpc": "2.0", "id": own, "method": asked}));
                        let output = output.clone();
                        std::thread::spawn(move || {
                            let reply = receiver.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
                            output.send(&text_result(&id, reply.to_string()));
                        });
                    }
                    other => output.send(&json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!("Unknown tool: {other}")}})),
                }
                answered.fetch_add(1, Ordering::SeqCst);
            }
            "ping" => output.send(&json!({"jsonrpc": "2.0", "id": id, "result": {}})),
            _ if id.is_null() => {}
            _ => output.send(&json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}})),
        }
    }
}
