//! The deployment recipes in `deploy/` say only what this binary accepts: every `mimo`
//! command line and environment in the compose file, the Kubernetes manifests and the
//! systemd units goes through `mimo ... --print-config` (which parses and checks every
//! setting), and the probes, health checks and advertised addresses aim at the ports the
//! services are told to listen on. (Running them needs a Docker engine, a Kubernetes cluster
//! or systemd as PID 1, none of which this test has.)

use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIMO: &str = env!("CARGO_BIN_EXE_mimo");

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The listen setting of each service command.
fn listen_key(command: &str) -> &'static str {
    match command {
        "registry" => "registry_listen",
        "skill-host" => "skill_host_listen",
        "memory" => "memory_listen",
        "telemetry" => "telemetry_listen",
        other => panic!("unknown service command {other:?}"),
    }
}

/// Runs `mimo ARGS --print-config` with `env` as the only `MIMO_*` variables; returns the
/// effective settings, or panics naming `recipe` and mimo's error.
fn effective(recipe: &str, args: &[String], env: &BTreeMap<String, String>) -> toml::Table {
    let mut command = Command::new(MIMO);
    command.args(args).arg("--print-config");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MIMO_") {
            command.env_remove(&key);
        }
    }
    command.envs(env);
    let output = command.output().expect("run mimo");
    assert!(
        output.status.success(),
        "{recipe}: `mimo {} --print-config` with {env:?} is refused: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    toml::from_str(&String::from_utf8_lossy(&output.stdout)).expect("print-config is TOML")
}

fn setting(settings: &toml::Table, key: &str) -> String {
    settings
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{key} missing from {settings:?}"))
        .to_string()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} has no port"))
}

fn string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| items.iter().map(string).collect())
        .unwrap_or_default()
}

/// Checks that a skills file is JSON in the mcpServers format with a command per skill.
fn check_skills_file(recipe: &str, text: &str) {
    let skills: serde_json::Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{recipe}: the skills file is not JSON: {e}"));
    let servers = skills["mcpServers"]
        .as_object()
        .unwrap_or_else(|| panic!("{recipe}: no mcpServers object"));
    assert!(!servers.is_empty(), "{recipe}: no skills");
    for (name, server) in servers {
        assert!(
            server["command"].is_string(),
            "{recipe}: skill {name} has no command"
        );
    }
}

#[test]
fn the_compose_file_runs_commands_mimo_accepts_and_checks_the_ports_they_serve() {
    let path = deploy().join("compose/compose.yaml");
    let mut compose: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).expect("YAML");
    compose.apply_merge().expect("merge keys");
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<String> = services.keys().map(string).collect();
    let mut listen_ports = BTreeMap::new();
    let mut mimo_services = 0;
    for (name, service) in services {
        let name = string(name);
        if service["image"].as_str() != Some("mimo:latest") {
            continue;
        }
        mimo_services += 1;
        let command = strings(&service["command"]);
        let env: BTreeMap<String, String> = service["environment"]
            .as_mapping()
            .expect("environment")
            .iter()
            .filter(|(key, _)| string(key).starts_with("MIMO_"))
            .map(|(key, value)| (string(key), string(value)))
            .collect();
        let settings = effective(&format!("compose service {name}"), &command, &env);
        let listen = setting(&settings, listen_key(&command[0]));
        // The health check asks the port the service listens on.
        let check = strings(&service["healthcheck"]["test"]);
        assert_eq!(check[..3], ["CMD", "mimo", "health"], "{name}: {check:?}");
        assert_eq!(port_of(&check[3]), port_of(&listen), "{name}: {check:?}");
        listen_ports.insert(name.clone(), port_of(&listen));
        for dependency in service["depends_on"].as_mapping().into_iter().flatten() {
            assert!(
                names.contains(&string(dependency.0)),
                "{name} depends on a missing service"
            );
        }
        if command[0] == "skill-host" {
            let advertised = setting(&settings, "advertise_address");
            assert_eq!(advertised, format!("{name}:{}", port_of(&listen)));
        }
    }
    assert_eq!(
        mimo_services, 5,
        "registry, telemetry, memory and two skill-hosts"
    );
    // Every address a service dials names a service on the compose network, at its port.
    let shared = &compose["x-mimo-environment"];
    for key in [
        "MIMO_REGISTRY_ADDRESS",
        "MIMO_TELEMETRY_ADDRESS",
        "MIMO_MEMORY_ADDRESS",
    ] {
        let address = string(&shared[key]);
        let (host, port) = address.split_once(':').expect("host:port");
        assert_eq!(
            listen_ports.get(host).copied(),
            Some(port.parse().unwrap()),
            "{key}={address}"
        );
    }
    check_skills_file(
        "compose/skills.json",
        &std::fs::read_to_string(deploy().join("compose/skills.json")).unwrap(),
    );
}

#[test]
fn the_kubernetes_manifests_run_commands_mimo_accepts_with_probes_on_the_served_ports() {
    let folder = deploy().join("kubernetes");
    let kustomization: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(folder.join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let mut documents = Vec::new();
    for file in strings(&kustomization["resources"]) {
        let text = std::fs::read_to_string(folder.join(&file))
            .unwrap_or_else(|e| panic!("kustomization lists {file}: {e}"));
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            documents.push((file.clone(), Value::deserialize(document).expect("YAML")));
        }
    }
    let of_kind = |kind: &str| {
        documents
            .iter()
            .filter(move |(_, d)| d["kind"].as_str() == Some(kind))
            .collect::<Vec<_>>()
    };
    let config_map = |name: &str| {
        of_kind("ConfigMap")
            .into_iter()
            .find(|(_, d)| d["metadata"]["name"].as_str() == Some(name))
            .map(|(_, d)| d["data"].clone())
            .unwrap_or_else(|| panic!("no ConfigMap {name}"))
    };
    check_skills_file(
        "the mimo-skills ConfigMap",
        config_map("mimo-skills")["skills.json"].as_str().unwrap(),
    );
    let mut pods: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut mimo_containers = 0;
    for kind in ["Deployment", "StatefulSet"] {
        for (file, workload) in of_kind(kind) {
            let template = &workload["spec"]["template"];
            let app = string(&template["metadata"]["labels"]["app"]);
            let containers = template["spec"]["containers"]
                .as_sequence()
                .unwrap()
                .clone();
            for container in &containers {
                if container["image"].as_str() != Some("mimo") {
                    continue;
                }
                mimo_containers += 1;
                let recipe = format!("{file}: container {}", string(&container["name"]));
                let mut env = BTreeMap::new();
                for source in container["envFrom"].as_sequence().into_iter().flatten() {
                    let name = source["configMapRef"]["name"].as_str().unwrap();
                    for (key, value) in config_map(name).as_mapping().unwrap() {
                        env.insert(string(key), string(value));
                    }
                }
                for variable in container["env"].as_sequence().into_iter().flatten() {
                    let value = match variable.get("value") {
                        Some(value) => string(value),
                        // Filled in by Kubernetes: a pod IP, a secret.
                        None => "10.1.2.3".to_string(),
                    };
                    env.insert(string(&variable["name"]), value);
                }
                // Kubernetes expands $(VAR) from the variables defined before.
                let expanded: BTreeMap<String, String> = env
                    .iter()
                    .map(|(key, value)| {
                        let mut value = value.clone();
                        for (other, replacement) in &env {
                            value = value.replace(&format!("$({other})"), replacement);
                        }
                        (key.clone(), value)
                    })
                    .filter(|(key, _)| key.starts_with("MIMO_"))
                    .collect();
                let args = strings(&container["args"]);
                let settings = effective(&recipe, &args, &expanded);
                let listen = port_of(&setting(&settings, listen_key(&args[0])));
                let grpc_port = container["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"].as_str() == Some("grpc"))
                    .map(|p| p["containerPort"].as_u64().unwrap() as u16);
                assert_eq!(
                    grpc_port,
                    Some(listen),
                    "{recipe}: the grpc port is the listen port"
                );
                for probe in ["readinessProbe", "livenessProbe"] {
                    assert_eq!(
                        container[probe]["grpc"]["port"].as_u64(),
                        Some(u64::from(listen)),
                        "{recipe}: {probe} on the gRPC health service"
                    );
                }
                assert!(
                    container["resources"]["limits"]["memory"].is_string(),
                    "{recipe}: a memory limit"
                );
            }
            pods.entry(app).or_default().extend(containers);
        }
    }
    assert_eq!(
        mimo_containers, 4,
        "registry, telemetry, memory, skill-host"
    );
    // Every Service selects pods that name the port it targets.
    for (file, service) in of_kind("Service") {
        let app = string(&service["spec"]["selector"]["app"]);
        let containers = pods
            .get(&app)
            .unwrap_or_else(|| panic!("{file}: Service selects app={app}, which no workload has"));
        for port in service["spec"]["ports"].as_sequence().unwrap() {
            let target = string(&port["targetPort"]);
            let named = containers.iter().any(|c| {
                c["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"].as_str() == Some(target.as_str()))
            });
            assert!(
                named,
                "{file}: Service targets port {target}, which app={app} lacks"
            );
        }
    }
}

#[test]
fn the_systemd_units_run_commands_mimo_accepts_with_the_example_settings() {
    let folder = deploy().join("systemd");
    let mut env = BTreeMap::new();
    for line in std::fs::read_to_string(folder.join("mimo.env"))
        .unwrap()
        .lines()
    {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        env.insert(key.to_string(), value.to_string());
    }
    let mut units = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        units += 1;
        let unit = std::fs::read_to_string(&path).unwrap();
        let exec = unit
            .lines()
            .find_map(|line| line.strip_prefix("ExecStart="))
            .expect("ExecStart");
        let words: Vec<&str> = exec.split_whitespace().collect();
        assert_eq!(words[0], "/usr/local/bin/mimo", "{}", path.display());
        assert!(unit.contains("EnvironmentFile=-/etc/mimo/mimo.env"));
        // The files the unit's comment says to install, from their examples here.
        let args: Vec<String> = words[1..]
            .iter()
            .map(|word| match *word {
                "/etc/mimo/mimo.toml" => deploy().join("mimo.example.toml").display().to_string(),
                other => other.to_string(),
            })
            .collect();
        let service = args.last().unwrap().clone();
        let unit_name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(unit_name, format!("mimo-{service}.service"));
        let settings = effective(&unit_name, &args, &env);
        assert!(settings.contains_key(listen_key(&service)));
        assert!(
            unit.contains("TimeoutStopSec="),
            "{unit_name}: a stop timeout"
        );
    }
    assert_eq!(units, 4, "one unit per service");
}
