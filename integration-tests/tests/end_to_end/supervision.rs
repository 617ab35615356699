//! The skill-host against a skill that misbehaves on purpose (`misbehaving-skill`): crashes,
//! exits with calls in flight, hangs, floods, oversized answers, grandchildren, and the
//! runtime add / remove / restart / reload of skills.

use super::{Store, PATIENCE};
use mimo_integration_tests::{wait_until, Cluster, ClusterBuilder};
use mimo_proto::connect::Channel;
use mimo_proto::v1::registry_client::RegistryClient;
use mimo_proto::v1::skill_host_client::SkillHostClient;
use mimo_proto::v1::{
    AddSkillRequest, AlertState, CallToolRequest, CallToolResponse, GetSkillRequest,
    ListAlertsRequest, ListRegisteredSkillsRequest, ListToolsRequest, ReloadSkillsRequest,
    RemoveSkillRequest, ResolveToolRequest, RestartSkillRequest, RevokeLeaseRequest, SkillState,
    SkillStatus, TimeToLiveRequest,
};
use mimo_skill_host::SkillSpec;
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::Code;

/// The misbehaving test skill with `args` choosing its faults.
fn misbehaving(args: &[&str]) -> SkillSpec {
    SkillSpec {
        command: env!("CARGO_BIN_EXE_misbehaving-skill").into(),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        env: BTreeMap::new(),
        cwd: None,
        lazy: false,
        instances: 1,
    }
}

async fn status(host: &SkillHostClient<Channel>, skill: &str) -> Option<SkillStatus> {
    let request = GetSkillRequest {
        skill: skill.into(),
    };
    Some(host.clone().get_skill(request).await.ok()?.into_inner())
}

/// Waits until `skill` is in `state` and returns its status.
async fn wait_for_state(
    host: &SkillHostClient<Channel>,
    skill: &str,
    state: SkillState,
) -> SkillStatus {
    wait_until(&format!("{skill} {state:?}"), PATIENCE, || async {
        status(host, skill)
            .await
            .filter(|status| status.state == state as i32)
    })
    .await
}

/// Calls `tool` of `skill` directly on the host, with a deadline of `timeout`.
async fn call_on(
    host: &SkillHostClient<Channel>,
    skill: &str,
    tool: &str,
    arguments_json: &str,
    timeout: Duration,
) -> Result<CallToolResponse, tonic::Status> {
    let mut request = tonic::Request::new(CallToolRequest {
        skill: skill.into(),
        tool: tool.into(),
        arguments_json: arguments_json.into(),
        lease_id: 0,
    });
    request.set_timeout(timeout);
    Ok(host.clone().call_tool(request).await?.into_inner())
}

async fn echo(host: &SkillHostClient<Channel>, skill: &str, text: &str) -> String {
    let arguments = serde_json::json!({ "text": text }).to_string();
    let answer = call_on(host, skill, "echo", &arguments, Duration::from_secs(30))
        .await
        .unwrap_or_else(|status| panic!("echo on {skill}: {status:?}"));
    answer.content[0].text.clone()
}

async fn registered_tools(cluster: &Cluster, skill: &str) -> Vec<String> {
    let request = ListToolsRequest {
        skill: skill.into(),
        ..Default::default()
    };
    match cluster.registry().await.list_tools(request).await {
        Ok(response) => response
            .into_inner()
            .tools
            .into_iter()
            .map(|tool| tool.name)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The lease each registered skill lives under, by skill name.
async fn registered_leases(cluster: &Cluster) -> BTreeMap<String, u64> {
    match cluster
        .registry()
        .await
        .list_skills(ListRegisteredSkillsRequest {})
        .await
    {
        Ok(response) => response
            .into_inner()
            .skills
            .into_iter()
            .map(|skill| (skill.skill, skill.lease_id))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie is dead; its reaper is whoever adopted it.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A cluster builder whose registry keeps its state in `store`.
async fn cluster_on(store: Store) -> ClusterBuilder {
    match store {
        Store::Memory => ClusterBuilder::default(),
        Store::Etcd => ClusterBuilder::default().registry_on_etcd().await,
    }
}

on_both_stores!(a_crashed_skill_is_restarted_until_its_restart_budget_is_spent);
async fn a_crashed_skill_is_restarted_until_its_restart_budget_is_spent(store: Store) {
    let cluster = cluster_on(store)
        .await
        .skill("crashy", misbehaving(&["--crash-after", "1"]))
        .skill("steady", misbehaving(&[]))
        .configure_skill_host(|config| {
            config.max_restarts = 2;
            config.restart_backoff = Duration::from_millis(50);
        })
        .start()
        .await;
    let host = cluster.skill_host().await;
    let mut last_lease = 0;
    for round in 0..=2u32 {
        let ready = wait_for_state(&host, "crashy", SkillState::Ready).await;
        assert_eq!(ready.restarts, round);
        last_lease = wait_until("crashy registered", PATIENCE, || async {
            registered_leases(&cluster).await.get("crashy").copied()
        })
        .await;
        assert_eq!(echo(&host, "crashy", "first").await, "first");
        let crashed = call_on(&host, "crashy", "echo", r#"{"text":"second"}"#, PATIENCE)
            .await
            .unwrap_err();
        assert_eq!(crashed.code(), Code::Unavailable, "{crashed:?}");
        assert!(
            crashed.message().contains("exit status: 1")
                && crashed.message().contains("crashing after 1 calls"),
            "the error carries the exit status and the stderr tail: {}",
            crashed.message()
        );
    }
    let failed = wait_for_state(&host, "crashy", SkillState::Failed).await;
    assert_eq!(failed.restarts, 2);
    assert!(
        failed.error.contains("not restarted again") && failed.error.contains("2 restarts within"),
        "{}",
        failed.error
    );
    assert_eq!(failed.pid, 0);
    wait_until("crashy's tools leave the registry", PATIENCE, || async {
        registered_tools(&cluster, "crashy")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let leases = registered_leases(&cluster).await;
    assert!(!leases.contains_key("crashy"), "{leases:?}");
    let steady_lease = leases["steady"];
    let mut registry = cluster.registry().await;
    let revoked = registry
        .time_to_live(TimeToLiveRequest {
            lease_id: last_lease,
        })
        .await
        .expect_err("the failed skill's lease is revoked");
    assert_eq!(revoked.code(), Code::NotFound, "{revoked:?}");
    let steady = registry
        .time_to_live(TimeToLiveRequest {
            lease_id: steady_lease,
        })
        .await
        .expect("the healthy skill keeps its own lease")
        .into_inner();
    assert_eq!(steady.skills, ["steady"]);

    // The failure raises an alert in telemetry, which resolves once the skill is restarted.
    let telemetry = cluster.telemetry().await;
    let alert = wait_until("a skill_failed alert for crashy", PATIENCE, || {
        let mut telemetry = telemetry.clone();
        async move {
            let alerts = telemetry
                .list_alerts(ListAlertsRequest::default())
                .await
                .ok()?
                .into_inner();
            alerts
                .firing
                .into_iter()
                .find(|alert| alert.name == "skill_failed" && alert.subject == "crashy")
        }
    })
    .await;
    assert_eq!(alert.state, AlertState::Firing as i32);
    assert!(alert.message.contains("not restarted again"), "{alert:?}");
    assert_eq!(alert.instance.as_ref().unwrap().service, "skill-host");
    host.clone()
        .restart_skill(RestartSkillRequest {
            skill: "crashy".into(),
        })
        .await
        .expect("restart");
    wait_until("the alert to resolve after a restart", PATIENCE, || {
        let mut telemetry = telemetry.clone();
        async move {
            let alerts = telemetry
                .list_alerts(ListAlertsRequest {
                    service: "skill-host".into(),
                })
                .await
                .ok()?
                .into_inner();
            let resolved = alerts.recent.iter().any(|alert| {
                alert.subject == "crashy" && alert.state == AlertState::Resolved as i32
            });
            (alerts.firing.is_empty() && resolved).then_some(())
        }
    })
    .await;
    let crashy_lease = wait_until("crashy under a new lease", PATIENCE, || async {
        registered_leases(&cluster).await.get("crashy").copied()
    })
    .await;
    assert_ne!(crashy_lease, steady_lease);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_fail_at_once_when_the_skill_exits_mid_call() {
    let cluster = ClusterBuilder::default()
        .skill("quitter", misbehaving(&[]))
        .configure_skill_host(|config| config.max_restarts = 0)
        .start()
        .await;
    let host = cluster.skill_host().await;
    wait_for_state(&host, "quitter", SkillState::Ready).await;
    // Deadlines far beyond the test's patience: only the exit can end these calls in time.
    let long = Duration::from_secs(3600);
    let sleepers: Vec<_> = (0..5)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                call_on(&host, "quitter", "sleep", r#"{"ms": 3600000}"#, long).await
            })
        })
        .collect();
    let exit = call_on(&host, "quitter", "exit", r#"{"code": 7}"#, long)
        .await
        .unwrap_err();
    assert_eq!(exit.code(), Code::Unavailable);
    for sleeper in sleepers {
        let error = tokio::time::timeout(PATIENCE, sleeper)
            .await
            .expect("a pending call ends when its skill exits, not at its deadline")
            .unwrap()
            .unwrap_err();
        assert_eq!(error.code(), Code::Unavailable, "{error:?}");
        assert!(
            error.message().contains("exit status: 7")
                && error.message().contains("exiting with status 7"),
            "{}",
            error.message()
        );
    }
    let failed = wait_for_state(&host, "quitter", SkillState::Failed).await;
    assert!(failed.last_exit.contains('7'), "{}", failed.last_exit);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_larger_message_limit_lets_a_20_mib_answer_through_grpc() {
    let limit = 24 * 1024 * 1024;
    let cluster = ClusterBuilder::default()
        .skill("big", misbehaving(&[]))
        .configure_skill_host(move |config| config.max_message_bytes = limit)
        .start()
        .await;
    wait_for_state(&cluster.skill_host().await, "big", SkillState::Ready).await;
    let channel = mimo_proto::connect::channel(cluster.skill_host_address())
        .await
        .unwrap();
    let mut host = mimo_proto::connect::skill_host_with_limit(channel, limit);
    let bytes = 20 * 1024 * 1024;
    let answer = host
        .call_tool(CallToolRequest {
            skill: "big".into(),
            tool: "big".into(),
            arguments_json: format!(r#"{{"bytes": {bytes}}}"#),
            lease_id: 0,
        })
        .await
        .expect("a 20 MiB answer under a 24 MiB limit")
        .into_inner();
    assert_eq!(answer.content[0].text.len(), bytes);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_fails_its_call_and_the_skill_keeps_serving() {
    let cluster = ClusterBuilder::default()
        .skill("big", misbehaving(&["--noise", "--flood-stdout", "5000"]))
        .start()
        .await;
    let host = cluster.skill_host().await;
    wait_for_state(&host, "big", SkillState::Ready).await;
    let limit = mimo_proto::MAX_MESSAGE_BYTES;
    let arguments = format!(r#"{{"bytes": {}}}"#, 20 * 1024 * 1024);
    let error = call_on(&host, "big", "big", &arguments, PATIENCE)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert!(
        error.message().contains(&format!("the limit is {limit}")),
        "{}",
        error.message()
    );
    // Reading resumed after the dropped line: answers still match their calls, through the
    // noise line written before each of them.
    assert_eq!(
        echo(&host, "big", "after the big one").await,
        "after the big one"
    );
    let small = call_on(&host, "big", "big", r#"{"bytes": 1000}"#, PATIENCE)
        .await
        .unwrap();
    assert_eq!(small.content[0].text.len(), 1000);
    let running = status(&host, "big").await.unwrap();
    assert_eq!(running.state, SkillState::Ready as i32);
    assert_eq!(running.restarts, 0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_out_of_order_reach_their_own_callers() {
    let cluster = ClusterBuilder::default()
        .skill("sleepy", misbehaving(&[]))
        .start()
        .await;
    let host = cluster.skill_host().await;
    wait_for_state(&host, "sleepy", SkillState::Ready).await;
    let calls: Vec<_> = [900u64, 600, 300, 0]
        .into_iter()
        .map(|ms| {
            let host = host.clone();
            tokio::spawn(async move {
                let arguments = format!(r#"{{"ms": {ms}}}"#);
                let answer = call_on(&host, "sleepy", "sleep", &arguments, PATIENCE).await;
                (ms, answer.unwrap().content[0].text.clone())
            })
        })
        .collect();
    for call in calls {
        let (ms, text) = call.await.unwrap();
        assert_eq!(text, format!("slept {ms} ms"));
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_and_queue_refuse_the_next_call_at_once() {
    let cluster = ClusterBuilder::default()
        .skill("narrow", misbehaving(&[]))
        .configure_skill_host(|config| {
            config.max_in_flight_per_skill = 2;
            config.max_waiting_per_skill = 2;
        })
        .start()
        .await;
    let host = cluster.skill_host().await;
    wait_for_state(&host, "narrow", SkillState::Ready).await;
    let long = Duration::from_secs(3600);
    let mut busy = Vec::new();
    for admitted in 1..=4u32 {
        let caller = host.clone();
        busy.push(tokio::spawn(async move {
            call_on(&caller, "narrow", "sleep", r#"{"ms": 5000}"#, long).await
        }));
        wait_until(&format!("{admitted} calls admitted"), PATIENCE, || async {
            let status = status(&host, "narrow").await?;
            (status.calls_in_flight + status.calls_waiting == admitted).then_some(())
        })
        .await;
    }
    let full = status(&host, "narrow").await.unwrap();
    assert_eq!((full.calls_in_flight, full.calls_waiting), (2, 2));
    let refused = call_on(&host, "narrow", "echo", r#"{"text":"x"}"#, long)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("2 calls in flight and 2 waiting, the limits"),
        "{}",
        refused.message()
    );
    for call in busy {
        let answer = call.await.unwrap().unwrap();
        assert_eq!(answer.content[0].text, "slept 5000 ms");
    }
    assert_eq!(echo(&host, "narrow", "free again").await, "free again");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_start_times_out_but_stderr_activity_extends_it() {
    let cluster = ClusterBuilder::default()
        .skill("hangs", misbehaving(&["--hang-initialize"]))
        .skill(
            "busy",
            misbehaving(&["--slow-initialize-ms", "4000", "--stderr-every-ms", "200"]),
        )
        .skill(
            "chatty",
            misbehaving(&["--stderr-long-line", "100000", "--stderr-lines", "50000"]),
        )
        .configure_skill_host(|config| {
            config.initialize_timeout = Duration::from_secs(2);
            config.max_restarts = 0;
        })
        .start()
        .await;
    let host = cluster.skill_host().await;
    let hung = wait_for_state(&host, "hangs", SkillState::Failed).await;
    assert!(
        hung.error.contains("no answer to initialize within 2s"),
        "{}",
        hung.error
    );
    let busy = wait_for_state(&host, "busy", SkillState::Ready).await;
    assert!(busy
        .recent_stderr
        .iter()
        .any(|l| l.contains("still working")));
    wait_for_state(&host, "chatty", SkillState::Ready).await;
    assert_eq!(echo(&host, "chatty", "heard").await, "heard");
    let chatty = status(&host, "chatty").await.unwrap();
    assert_eq!(chatty.recent_stderr.len(), 50, "the stderr ring is bounded");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_skill_ends_its_grandchildren_that_ignore_sigterm() {
    let cluster = ClusterBuilder::default()
        .skill("parent", misbehaving(&[]))
        .configure_skill_host(|config| config.stop_grace = Duration::from_millis(300))
        .start()
        .await;
    let mut host = cluster.skill_host().await;
    let ready = wait_for_state(&host, "parent", SkillState::Ready).await;
    let answer = call_on(&host, "parent", "spawn", "{}", PATIENCE)
        .await
        .unwrap();
    let grandchild: u32 = answer.content[0].text.parse().unwrap();
    let answer = call_on(&host, "parent", "spawn_detached", "{}", PATIENCE)
        .await
        .unwrap();
    let detached: u32 = answer.content[0].text.parse().unwrap();
    assert!(!is_gone(grandchild) && !is_gone(detached) && !is_gone(ready.pid));
    host.remove_skill(RemoveSkillRequest {
        skill: "parent".into(),
    })
    .await
    .unwrap();
    wait_until("the skill's whole group is gone", PATIENCE, || async {
        (is_gone(grandchild) && is_gone(ready.pid)).then_some(())
    })
    .await;
    wait_until(
        "the grandchild that left the group is gone",
        PATIENCE,
        || async { is_gone(detached).then_some(()) },
    )
    .await;
    let missing = host
        .get_skill(GetSkillRequest {
            skill: "parent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skills_are_added_restarted_and_refused_at_runtime() {
    let cluster = ClusterBuilder::default()
        .configure_skill_host(|config| config.max_skills = 2)
        .start()
        .await;
    let mut host = cluster.skill_host().await;
    let entry = serde_json::json!({
        "command": env!("CARGO_BIN_EXE_misbehaving-skill"),
        "env": {"GREETING": "${HOME}"},
    })
    .to_string();
    for name in ["one", "two"] {
        host.add_skill(AddSkillRequest {
            name: name.into(),
            entry_json: entry.clone(),
        })
        .await
        .unwrap();
    }
    let before = wait_for_state(&host, "one", SkillState::Ready).await;
    assert_eq!(echo(&host, "one", "added").await, "added");
    wait_until("one's tools are registered", PATIENCE, || async {
        (!registered_tools(&cluster, "one").await.is_empty()).then_some(())
    })
    .await;
    let add = |name: &str, entry_json: &str| {
        let mut host = host.clone();
        let request = AddSkillRequest {
            name: name.into(),
            entry_json: entry_json.into(),
        };
        async move { host.add_skill(request).await.unwrap_err() }
    };
    let duplicate = add("one", &entry).await;
    assert_eq!(duplicate.code(), Code::AlreadyExists, "{duplicate:?}");
    let full = add("three", &entry).await;
    assert_eq!(full.code(), Code::ResourceExhausted, "{full:?}");
    assert!(full.message().contains("2 skills"), "{}", full.message());
    let unknown_field = add("x", r#"{"command": "x", "argz": []}"#).await;
    assert_eq!(unknown_field.code(), Code::InvalidArgument);
    assert!(unknown_field.message().contains("argz"));
    let not_json = add("x", "{oops").await;
    assert_eq!(not_json.code(), Code::InvalidArgument);

    host.restart_skill(RestartSkillRequest {
        skill: "one".into(),
    })
    .await
    .unwrap();
    let after = wait_for_state(&host, "one", SkillState::Ready).await;
    assert_ne!(after.pid, before.pid, "a restart runs a new process");
    wait_until("the old process is gone", PATIENCE, || async {
        is_gone(before.pid).then_some(())
    })
    .await;
    let two = status(&host, "two").await.unwrap();
    assert_eq!(two.state, SkillState::Ready as i32, "two was not touched");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_the_skills_file_applies_only_the_difference() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("skills.json");
    let command = env!("CARGO_BIN_EXE_misbehaving-skill");
    let write = |skills: serde_json::Value| {
        std::fs::write(
            &file,
            serde_json::json!({ "mcpServers": skills }).to_string(),
        )
        .unwrap();
    };
    write(serde_json::json!({
        "keep": {"command": command},
        "change": {"command": command},
        "drop": {"command": command},
    }));
    let specs = mimo_skill_host::load_skills_file(&file, |_| None).unwrap();
    let mut builder = ClusterBuilder::default();
    for (name, spec) in specs {
        builder = builder.skill(&name, spec);
    }
    let skills_file = file.clone();
    let cluster = builder
        .configure_skill_host(move |config| config.skills_file = Some(skills_file))
        .start()
        .await;
    let mut host = cluster.skill_host().await;
    let kept = wait_for_state(&host, "keep", SkillState::Ready).await;
    let changed = wait_for_state(&host, "change", SkillState::Ready).await;
    let dropped = wait_for_state(&host, "drop", SkillState::Ready).await;
    host.add_skill(AddSkillRequest {
        name: "runtime".into(),
        entry_json: serde_json::json!({ "command": command }).to_string(),
    })
    .await
    .unwrap();
    let runtime = wait_for_state(&host, "runtime", SkillState::Ready).await;
    write(serde_json::json!({
        "keep": {"command": command},
        "change": {"command": command, "args": ["--noise"]},
        "new": {"command": command},
    }));
    let summary = host
        .reload_skills(ReloadSkillsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.added, ["new"]);
    assert_eq!(summary.removed, ["drop"]);
    assert_eq!(summary.changed, ["change"]);
    assert_eq!(summary.unchanged, ["keep"]);
    wait_for_state(&host, "new", SkillState::Ready).await;
    let rechanged = wait_for_state(&host, "change", SkillState::Ready).await;
    assert_ne!(rechanged.pid, changed.pid);
    assert_eq!(status(&host, "keep").await.unwrap().pid, kept.pid);
    assert!(status(&host, "drop").await.is_none());
    assert!(is_gone(dropped.pid));
    let kept_runtime = status(&host, "runtime").await.unwrap();
    assert_eq!(
        (kept_runtime.state, kept_runtime.pid),
        (SkillState::Ready as i32, runtime.pid),
        "a skill added at runtime is not the file's to remove"
    );

    std::fs::write(&file, "{ not json").unwrap();
    let broken = host
        .reload_skills(ReloadSkillsRequest {})
        .await
        .unwrap_err();
    assert_eq!(broken.code(), Code::FailedPrecondition);
    assert!(
        broken.message().contains("running skills are unchanged"),
        "{}",
        broken.message()
    );
    assert_eq!(status(&host, "keep").await.unwrap().pid, kept.pid);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_skill_serves_its_manifest_starts_on_a_call_and_stops_when_idle() {
    let state = tempfile::tempdir().unwrap();
    let lazy = SkillSpec {
        lazy: true,
        ..misbehaving(&[])
    };
    let start = |state_dir: std::path::PathBuf| {
        ClusterBuilder::default()
            .skill("lazy", lazy.clone())
            .configure_skill_host(move |config| {
                config.state_dir = Some(state_dir);
                config.lazy_idle_timeout = Duration::from_millis(500);
            })
            .start()
    };
    // First run: no manifest yet, so the skill starts once to discover its tools.
    let cluster = start(state.path().to_path_buf()).await;
    let host = cluster.skill_host().await;
    wait_for_state(&host, "lazy", SkillState::Ready).await;
    let idle = wait_for_state(&host, "lazy", SkillState::Idle).await;
    assert_eq!(idle.pid, 0, "an idle lazy skill runs no process");
    assert!(idle.tools.iter().any(|tool| tool.name == "echo"));
    cluster.stop().await;

    // Second run: tools come from the stored manifest; nothing runs until the first call.
    let cluster = start(state.path().to_path_buf()).await;
    let host = cluster.skill_host().await;
    let idle = wait_for_state(&host, "lazy", SkillState::Idle).await;
    assert_eq!(idle.pid, 0);
    assert!(idle.last_exit.is_empty(), "never started in this run");
    wait_until("the manifest's tools are registered", PATIENCE, || async {
        registered_tools(&cluster, "lazy")
            .await
            .contains(&"lazy_echo".to_string())
            .then_some(())
    })
    .await;
    assert_eq!(echo(&host, "lazy", "wake up").await, "wake up");
    let stopped = wait_for_state(&host, "lazy", SkillState::Idle).await;
    assert!(!stopped.last_exit.is_empty(), "it ran and was stopped");
    assert_eq!(stopped.restarts, 0, "going idle is not a failure");
    let unknown = call_on(&host, "lazy", "no_such_tool", "{}", PATIENCE)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(
        status(&host, "lazy").await.unwrap().state,
        SkillState::Idle as i32,
        "a call of an unknown tool does not start the skill"
    );
    cluster.stop().await;
}

#[test]
fn a_short_soak_of_crashes_and_faulty_calls_leaks_nothing() {
    // In its own process, so that other tests' descriptors and children do not count.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_skill-host-soak"))
        .args(["--cycles", "50", "--calls", "500", "--seed", "7"])
        .output()
        .expect("run the soak");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("soak: ok, nothing leaked"),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("crash cycle: 50"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_a_skills_instances_and_each_instance_is_supervised() {
    let pooled = SkillSpec {
        instances: 3,
        ..misbehaving(&[])
    };
    let cluster = ClusterBuilder::default()
        .skill("pooled", pooled)
        .start()
        .await;
    let host = cluster.skill_host().await;
    let all_ready = wait_until("three ready instances", PATIENCE, || async {
        let status = status(&host, "pooled").await?;
        let ready = status
            .instances
            .iter()
            .filter(|i| i.state == SkillState::Ready as i32)
            .count();
        (ready == 3).then_some(status)
    })
    .await;
    let mut pids: Vec<u32> = all_ready.instances.iter().map(|i| i.pid).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three processes: {pids:?}");

    // Idle instances take turns.
    let mut answered = Vec::new();
    for _ in 0..6 {
        let answer = call_on(&host, "pooled", "pid", "{}", PATIENCE)
            .await
            .unwrap();
        answered.push(answer.content[0].text.parse::<u32>().unwrap());
    }
    answered.sort();
    answered.dedup();
    assert_eq!(answered, pids, "every instance answered");

    // Busy instances are avoided: three long calls land on three instances.
    let long = Duration::from_secs(3600);
    let sleepers: Vec<_> = (0..3)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(
                async move { call_on(&host, "pooled", "sleep", r#"{"ms": 3000}"#, long).await },
            )
        })
        .collect();
    wait_until("one call on each instance", PATIENCE, || async {
        let status = status(&host, "pooled").await?;
        status
            .instances
            .iter()
            .all(|i| i.calls_in_flight == 1)
            .then_some(())
    })
    .await;
    for sleeper in sleepers {
        sleeper.await.unwrap().unwrap();
    }

    // One instance killed from outside is restarted; the others serve meanwhile.
    let victim = pids[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // A call racing the crash may still reach the dying instance; the next ones do not.
    wait_until("the others answer", PATIENCE, || async {
        let answer = call_on(&host, "pooled", "pid", "{}", PATIENCE).await.ok()?;
        (answer.content[0].text != victim.to_string()).then_some(())
    })
    .await;
    let recovered = wait_until("the killed instance restarted", PATIENCE, || async {
        let status = status(&host, "pooled").await?;
        let restarted = status
            .instances
            .iter()
            .any(|i| i.restarts == 1 && i.state == SkillState::Ready as i32 && i.pid != victim);
        restarted.then_some(status)
    })
    .await;
    assert_eq!(recovered.restarts, 1);
    assert_eq!(recovered.state, SkillState::Ready as i32);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_answers_the_skills_requests_follows_its_tool_changes_and_cancels_late_calls() {
    let cluster = ClusterBuilder::default()
        .skill("talker", misbehaving(&[]))
        .start()
        .await;
    let host = cluster.skill_host().await;
    wait_for_state(&host, "talker", SkillState::Ready).await;

    let ask = |method: &str| {
        let host = host.clone();
        let arguments = serde_json::json!({ "method": method }).to_string();
        async move {
            let answer = call_on(&host, "talker", "ask_host", &arguments, PATIENCE)
                .await
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&answer.content[0].text).unwrap()
        }
    };
    let pong = ask("ping").await;
    assert_eq!(pong["result"], serde_json::json!({}), "{pong}");
    let refused = ask("sampling/createMessage").await;
    assert_eq!(refused["error"]["code"], -32601, "{refused}");

    // A tool list change reaches the host and the registry.
    call_on(&host, "talker", "grow", "{}", PATIENCE)
        .await
        .unwrap();
    wait_until("the new tool is registered", PATIENCE, || async {
        registered_tools(&cluster, "talker")
            .await
            .contains(&"talker_extra".to_string())
            .then_some(())
    })
    .await;
    assert!(status(&host, "talker")
        .await
        .unwrap()
        .tools
        .iter()
        .any(|tool| tool.name == "extra"));

    // A call whose deadline passes is cancelled at the skill.
    let late = call_on(
        &host,
        "talker",
        "sleep",
        r#"{"ms": 2000}"#,
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(late.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{late:?}"
    );
    let cancelled = wait_until("the skill hears of the cancel", PATIENCE, || async {
        let answer = call_on(&host, "talker", "cancellations", "{}", PATIENCE)
            .await
            .ok()?;
        let ids: Vec<serde_json::Value> = serde_json::from_str(&answer.content[0].text).ok()?;
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_calls_only_as_long_as_the_drain_timeout() {
    let mut cluster = ClusterBuilder::default()
        .skill("slow", misbehaving(&[]))
        .configure_skill_host(|config| config.drain_timeout = Duration::from_millis(500))
        .start()
        .await;
    let host = cluster.skill_host().await;
    wait_for_state(&host, "slow", SkillState::Ready).await;
    let caller = host.clone();
    let long_call = tokio::spawn(async move {
        call_on(
            &caller,
            "slow",
            "sleep",
            r#"{"ms": 3600000}"#,
            Duration::from_secs(3600),
        )
        .await
    });
    wait_until("the call is running", PATIENCE, || async {
        (status(&host, "slow").await?.calls_in_flight == 1).then_some(())
    })
    .await;
    // Stops within the cluster's bound although the call would run for an hour.
    cluster.stop_skill_host().await;
    let ended = tokio::time::timeout(PATIENCE, long_call)
        .await
        .expect("the call ends at shutdown")
        .unwrap()
        .unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains("stopped"), "{}", ended.message());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_working_directory_is_named_as_the_reason() {
    let cluster = ClusterBuilder::default()
        .skill(
            "lost",
            SkillSpec {
                cwd: Some("/nonexistent/folder".into()),
                ..misbehaving(&[])
            },
        )
        .configure_skill_host(|config| config.max_restarts = 0)
        .start()
        .await;
    let host = cluster.skill_host().await;
    let failed = wait_for_state(&host, "lost", SkillState::Failed).await;
    assert!(
        failed
            .error
            .contains("working directory (cwd) /nonexistent/folder is not a folder"),
        "{}",
        failed.error
    );
    cluster.stop().await;
}

on_both_stores!(a_host_whose_lease_expired_registers_again_and_refuses_stale_routes);
async fn a_host_whose_lease_expired_registers_again_and_refuses_stale_routes(store: Store) {
    let cluster = cluster_on(store)
        .await
        .skill("steady", misbehaving(&[]))
        .lease_ttl(Duration::from_secs(3))
        .start()
        .await;
    let host = cluster.skill_host().await;
    wait_for_state(&host, "steady", SkillState::Ready).await;
    let mut registry = cluster.registry().await;
    let resolve = |registry: &RegistryClient<Channel>| {
        let mut registry = registry.clone();
        async move {
            registry
                .resolve_tool(ResolveToolRequest {
                    name: "steady_echo".into(),
                })
                .await
                .map(|response| response.into_inner())
        }
    };
    let routed = wait_until("steady_echo registered", PATIENCE, || async {
        resolve(&registry).await.ok()
    })
    .await;
    assert_ne!(routed.lease_id, 0);
    let call = |lease_id: u64| {
        let mut host = host.clone();
        async move {
            host.call_tool(CallToolRequest {
                skill: "steady".into(),
                tool: "echo".into(),
                arguments_json: r#"{"text":"hi"}"#.into(),
                lease_id,
            })
            .await
        }
    };
    call(routed.lease_id)
        .await
        .expect("a call routed by the live registration");

    // The registration goes as after a long pause; the next heartbeat tells the host.
    registry
        .revoke_lease(RevokeLeaseRequest {
            lease_id: routed.lease_id,
        })
        .await
        .unwrap();
    let old_lease = routed.lease_id;
    let again = wait_until("steady registered under a new lease", PATIENCE, || {
        let registry = registry.clone();
        async move {
            resolve(&registry)
                .await
                .ok()
                .filter(|resolved| resolved.lease_id != old_lease)
        }
    })
    .await;
    let stale = call(routed.lease_id)
        .await
        .expect_err("the old route is stale");
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    assert!(
        stale.message().contains("resolve the tool again"),
        "{}",
        stale.message()
    );
    call(again.lease_id).await.expect("the new route works");
    call(0).await.expect("a call with no route to check");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skill_the_registry_refuses_leaves_the_others_registered_and_steady() {
    let ttl = Duration::from_secs(3);
    let cluster = ClusterBuilder::default()
        .skill("a", misbehaving(&[]))
        .skill("b", misbehaving(&[]))
        .skill("c", misbehaving(&[]))
        .registry_max_leases(2)
        .lease_ttl(ttl)
        .start()
        .await;
    let first = wait_until("two skills registered", PATIENCE, || async {
        let leases = registered_leases(&cluster).await;
        (leases.len() == 2).then_some(leases)
    })
    .await;
    // For two TTLs, the two keep the same leases: the refused third never disturbs them.
    let started = tokio::time::Instant::now();
    while started.elapsed() < ttl * 2 {
        assert_eq!(registered_leases(&cluster).await, first);
        // Pacing the observations, not waiting for anything.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.stop().await;
}
