//! Client commands: talk to running services over gRPC and print for people (or JSON).

use crate::cli::{CategoryArg, MemoryAction, SkillsAction, ToolsAction};
use crate::output::out;
use crate::settings::Effective;
use anyhow::Context;
use mimo_proto::connect;
use mimo_proto::v1::{
    CallToolRequest, CallToolResponse, Category, DeleteRequest, Engram, GetRequest,
    ListAlertsRequest, ListInstancesRequest, ListToolsRequest, ResolveToolRequest, Scoring,
    SearchRequest, StoreRequest,
};
use std::process::ExitCode;
use std::time::Duration;

/// Runs a `mimo tools ...` command.
pub async fn tools(settings: &Effective, action: ToolsAction) -> anyhow::Result<ExitCode> {
    let mut registry =
        connect::registry(connect::channel_to_any(&settings.registry_address).await?);
    match action {
        ToolsAction::List { skill, json } => {
            let mut tools = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = ListToolsRequest {
                    skill: skill.clone().unwrap_or_default(),
                    page_token,
                    ..ListToolsRequest::default()
                };
                let page = registry
                    .list_tools(request)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                tools.extend(page.tools);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            for tool in &tools {
                let described = tool.tool.clone().unwrap_or_default();
                if json {
                    let line = serde_json::json!({
                        "name": tool.name,
                        "skill": tool.skill,
                        "tool": described.name,
                        "description": described.description,
                        "inputSchema": serde_json::from_str::<serde_json::Value>(&described.input_schema_json).unwrap_or_default(),
                        "endpoints": tool.endpoints,
                    });
                    out!("{line}");
                } else {
                    let summary = described.description.lines().next().unwrap_or_default();
                    out!("{:<40} {:<16} {}", tool.name, tool.skill, summary);
                }
            }
            if tools.is_empty() && !json {
                eprintln!("no live tools: no skill-host has a ready skill registered with this registry; `mimo skills list` shows each skill's state (and why one failed), and a skill-host's log says whether it reaches the registry");
            }
            Ok(ExitCode::SUCCESS)
        }
        ToolsAction::Call {
            name,
            args,
            timeout_ms,
            json,
        } => {
            let target = registry
                .resolve_tool(ResolveToolRequest { name: name.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
            let channel = connect::channel(&target.endpoint)
                .await
                .with_context(|| format!("skill-host of {name}"))?;
            let mut request = tonic::Request::new(CallToolRequest {
                skill: target.skill,
                tool: target.tool,
                arguments_json: args,
                lease_id: target.lease_id,
            });
            request.set_timeout(Duration::from_millis(timeout_ms));
            let result = connect::skill_host_with_limit(channel, settings.skill_max_message_bytes)
                .call_tool(request)
                .await
                .map_err(status_error)?
                .into_inner();
            print_call_result(&result, json);
            Ok(if result.is_error {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Runs a `mimo skills` command against the skill-host.
pub async fn skills(settings: &Effective, action: SkillsAction) -> anyhow::Result<ExitCode> {
    use mimo_proto::v1::{
        AddSkillRequest, GetSkillRequest, ListSkillsRequest, ReloadSkillsRequest,
        RemoveSkillRequest, RestartSkillRequest,
    };
    let mut host = connect::skill_host_with_limit(
        connect::channel(&settings.skill_host_address).await?,
        settings.skill_max_message_bytes,
    );
    match action {
        SkillsAction::List { json } => {
            let skills = host
                .list_skills(ListSkillsRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .skills;
            if json {
                for skill in &skills {
                    out!("{}", skill_json(skill));
                }
            } else {
                out!(
                    "{:<24} {:<10} {:>8} {:>8} {:>6}  ERROR",
                    "SKILL",
                    "STATE",
                    "PID",
                    "RESTARTS",
                    "TOOLS"
                );
                for skill in &skills {
                    let line = format!(
                        "{:<24} {:<10} {:>8} {:>8} {:>6}  {}",
                        skill.name,
                        state_name(skill.state),
                        skill.pid,
                        skill.restarts,
                        skill.tools.len(),
                        truncate(&skill.error, 200)
                    );
                    out!("{}", line.trim_end());
                }
            }
            if skills.is_empty() {
                eprintln!("this skill-host runs no skill");
            }
        }
        SkillsAction::Show { name } => {
            let skill = host
                .get_skill(GetSkillRequest { skill: name })
                .await
                .map_err(status_error)?
                .into_inner();
            out!("{}", serde_json::to_string_pretty(&skill_json(&skill))?);
        }
        SkillsAction::Add { name, entry } => {
            let skill = host
                .add_skill(AddSkillRequest {
                    name,
                    entry_json: entry,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            out!("added {}", skill.name);
        }
        SkillsAction::Remove { name } => {
            host.remove_skill(RemoveSkillRequest {
                skill: name.clone(),
            })
            .await
            .map_err(status_error)?;
            out!("removed {name}");
        }
        SkillsAction::Restart { name } => {
            host.restart_skill(RestartSkillRequest {
                skill: name.clone(),
            })
            .await
            .map_err(status_error)?;
            out!("restarted {name}");
        }
        SkillsAction::Reload => {
            let summary = host
                .reload_skills(ReloadSkillsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            out!(
                "added: {:?}; removed: {:?}; changed: {:?}; unchanged: {}",
                summary.added,
                summary.removed,
                summary.changed,
                summary.unchanged.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn state_name(state: i32) -> &'static str {
    use mimo_proto::v1::SkillState;
    match SkillState::try_from(state).unwrap_or(SkillState::Unspecified) {
        SkillState::Unspecified => "new",
        SkillState::Starting => "starting",
        SkillState::Ready => "ready",
        SkillState::Failed => "failed",
        SkillState::Stopped => "stopped",
        SkillState::Backoff => "backoff",
        SkillState::Idle => "idle",
    }
}

fn skill_json(skill: &mimo_proto::v1::SkillStatus) -> serde_json::Value {
    serde_json::json!({
        "name": skill.name,
        "state": state_name(skill.state),
        "pid": skill.pid,
        "restarts": skill.restarts,
        "error": skill.error,
        "last_exit": skill.last_exit,
        "server": format!("{} {}", skill.server_name, skill.server_version).trim(),
        "protocol_version": skill.protocol_version,
        "tools": skill.tools.iter().map(|tool| tool.name.clone()).collect::<Vec<_>>(),
        "calls_in_flight": skill.calls_in_flight,
        "calls_waiting": skill.calls_waiting,
        "recent_stderr": skill.recent_stderr,
    })
}

fn print_call_result(result: &CallToolResponse, json: bool) {
    if json {
        let content: Vec<serde_json::Value> = result
            .content
            .iter()
            .map(mimo_skill_host::original_item)
            .collect();
        let mut whole = serde_json::json!({"content": content, "isError": result.is_error});
        if let Ok(structured) =
            serde_json::from_str::<serde_json::Value>(&result.structured_content_json)
        {
            whole["structuredContent"] = structured;
        }
        out!("{whole}");
        return;
    }
    for item in &result.content {
        match item.r#type.as_str() {
            "text" => out!("{}", item.text),
            "resource" if !item.text.is_empty() => {
                out!("[resource {}]\n{}", item.uri, item.text)
            }
            "resource" | "resource_link" => out!("[{} {}]", item.r#type, item.uri),
            other => out!("[{other} {}, {} bytes]", item.mime_type, item.data.len()),
        }
    }
    if result.is_error {
        eprintln!("the tool reported an error");
    }
}

/// Runs a `mimo memory ...` client command.
pub async fn memory(settings: &Effective, action: MemoryAction) -> anyhow::Result<ExitCode> {
    let mut memory = connect::memory(connect::channel(&settings.memory_address).await?);
    match action {
        MemoryAction::Store {
            text,
            category,
            importance,
            metadata,
            protected,
            allow_duplicate,
        } => {
            let request = StoreRequest {
                content: text,
                category: category_of(category).into(),
                importance,
                metadata_json: metadata.unwrap_or_default(),
                protected,
                allow_duplicate,
                ..Default::default()
            };
            let stored = memory
                .store(request)
                .await
                .map_err(status_error)?
                .into_inner();
            let engram = stored.engram.unwrap_or_default();
            out!("{}", engram.id);
            if stored.reinforced {
                eprintln!(
                    "a nearly identical engram was already stored: it was reinforced instead (importance {:.2}, {} accesses); --allow-duplicate stores a copy",
                    engram.importance, engram.access_count
                );
            }
        }
        MemoryAction::Search {
            query,
            limit,
            min_similarity,
            category,
            min_importance,
            hybrid,
            include_working,
        } => {
            let request = SearchRequest {
                query,
                limit,
                min_similarity,
                category: category.map_or(Category::Unspecified, category_of).into(),
                min_importance,
                scoring: if hybrid {
                    Scoring::Hybrid
                } else {
                    Scoring::Semantic
                }
                .into(),
                include_working,
                ..Default::default()
            };
            let hits = memory
                .search(request)
                .await
                .map_err(status_error)?
                .into_inner()
                .hits;
            if hits.is_empty() {
                eprintln!("nothing similar enough was found");
            }
            for hit in hits {
                let engram = hit.engram.unwrap_or_default();
                out!(
                    "{:.3}  {:.3}  {}  [{}]{}  {}",
                    hit.score,
                    hit.similarity,
                    engram.id,
                    category_name(&engram),
                    if hit.working { " [working]" } else { "" },
                    engram.content
                );
            }
        }
        MemoryAction::Get { id } => {
            let engram = memory
                .get(GetRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            print_engram(&engram);
        }
        MemoryAction::Delete { id } => {
            memory
                .delete(DeleteRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            out!("deleted {id}");
        }
        MemoryAction::Update {
            id,
            importance,
            category,
            metadata,
            protected,
        } => {
            return crate::memory_commands::update(
                settings, id, importance, category, metadata, protected,
            )
            .await
        }
        MemoryAction::Stats => return crate::memory_commands::stats(settings).await,
        MemoryAction::DeleteMatching {
            category,
            importance_below,
            created_before_ms,
            include_protected,
            dry_run,
        } => {
            let request = mimo_proto::v1::DeleteMatchingRequest {
                category: category.map_or(0, |category| category_of(category).into()),
                importance_below,
                created_before_unix_ms: created_before_ms,
                include_protected,
                dry_run,
            };
            let deleted = memory
                .delete_matching(request)
                .await
                .map_err(status_error)?
                .into_inner()
                .deleted;
            if dry_run {
                out!("{deleted} engrams match (dry run: none deleted)");
            } else {
                out!("deleted {deleted} engrams");
            }
        }
        MemoryAction::List {
            limit,
            offset,
            order,
            category,
        } => return crate::memory_commands::list(settings, limit, offset, order, category).await,
        MemoryAction::Remember {
            text,
            importance,
            category,
            ttl_ms,
        } => {
            return crate::memory_commands::remember(settings, text, importance, category, ttl_ms)
                .await
        }
        MemoryAction::Consolidate => return crate::memory_commands::consolidate(settings).await,
        MemoryAction::Decay {
            dry_run,
            half_life_days,
            forget_below,
        } => {
            return crate::memory_commands::decay(settings, dry_run, half_life_days, forget_below)
                .await
        }
        MemoryAction::Import { file } => {
            return crate::memory_commands::import(settings, &file).await
        }
        MemoryAction::Export {
            file,
            with_embeddings,
        } => return crate::memory_commands::export(settings, &file, with_embeddings).await,
        MemoryAction::Reembed => unreachable!("reembed opens the database; see main"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints every field of `engram`, one per line.
pub(crate) fn print_engram(engram: &Engram) {
    out!("id:           {}", engram.id);
    out!("category:     {}", category_name(engram));
    out!("importance:   {}", engram.importance);
    out!(
        "embedder:     {} ({} dimensions)",
        engram.embedder,
        engram.dimension
    );
    out!(
        "created:      {} ms since the epoch",
        engram.created_at_unix_ms
    );
    out!("accessed:     {} times", engram.access_count);
    out!("protected:    {}", engram.protected);
    out!("metadata:     {}", engram.metadata_json);
    out!("content:      {}", engram.content);
}

/// The name of `engram`'s category, as the command line writes it.
pub(crate) fn category_name(engram: &Engram) -> &'static str {
    match Category::try_from(engram.category).unwrap_or(Category::Unspecified) {
        Category::Unspecified => "unspecified",
        category => mimo_proto::category_names::name(category),
    }
}

/// The proto category of a command-line one.
pub(crate) fn category_of(category: CategoryArg) -> Category {
    match category {
        CategoryArg::Fact => Category::Fact,
        CategoryArg::Action => Category::Action,
        CategoryArg::Observation => Category::Observation,
        CategoryArg::Plan => Category::Plan,
        CategoryArg::Episode => Category::Episode,
        CategoryArg::Procedure => Category::Procedure,
    }
}

/// Prints every instance's latest report as a table.
/// `mimo top`: [`status`] again and again, the screen cleared in between when it is a
/// terminal, until Ctrl-C (or `iterations` refreshes, when not 0).
pub async fn top(
    settings: &Effective,
    interval_ms: u64,
    iterations: u64,
) -> anyhow::Result<ExitCode> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let interval = Duration::from_millis(interval_ms.max(100));
    let mut shown = 0;
    loop {
        if terminal {
            out!("\x1b[2J\x1b[H");
        }
        if let Err(error) = status(settings).await {
            out!("telemetry unreachable: {error:#}; retrying");
        }
        out!("-- every {} s; Ctrl-C to stop --", interval.as_secs_f64());
        shown += 1;
        if iterations != 0 && shown >= iterations {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// `mimo status`: every instance's latest report and the alerts firing.
/// `mimo health`: one line per address, `ADDRESS STATUS`; exit 1 unless all are SERVING.
pub async fn health(
    settings: &Effective,
    addresses: Vec<String>,
    service: &str,
) -> anyhow::Result<ExitCode> {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let addresses = if addresses.is_empty() {
        vec![
            settings.registry_address.clone(),
            settings.skill_host_address.clone(),
            settings.memory_address.clone(),
            settings.telemetry_address.clone(),
        ]
    } else {
        addresses
    };
    let mut all_serving = true;
    for address in addresses {
        let answer = match connect::channel(&address).await {
            Err(error) => Err(error.to_string()),
            Ok(channel) => {
                let mut request = tonic::Request::new(HealthCheckRequest {
                    service: service.to_string(),
                });
                request.set_timeout(std::time::Duration::from_secs(5));
                HealthClient::new(channel)
                    .check(request)
                    .await
                    .map(|answer| answer.into_inner().status())
                    .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
            }
        };
        let serving = matches!(
            answer,
            Ok(tonic_health::pb::health_check_response::ServingStatus::Serving)
        );
        all_serving &= serving;
        match answer {
            Ok(status) => out!("{address} {}", status.as_str_name()),
            Err(reason) => out!("{address} UNREACHABLE ({reason})"),
        }
    }
    Ok(if all_serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn status(settings: &Effective) -> anyhow::Result<ExitCode> {
    let mut telemetry = connect::telemetry(connect::channel(&settings.telemetry_address).await?);
    let instances = telemetry
        .list_instances(ListInstancesRequest::default())
        .await
        .map_err(status_error)?
        .into_inner()
        .instances;
    out!(
        "{:<11} {:<14} {:<9} {:<5} {:>7} {:>9} {:>5} {:>7} {:>8} {:>8} {:>6}  GAUGES",
        "SERVICE",
        "HOST",
        "INSTANCE",
        "STATE",
        "PID",
        "RSS_MIB",
        "FDS",
        "THREADS",
        "CHILDREN",
        "UPTIME_S",
        "AGE_S"
    );
    for status in &instances {
        let report = status.latest.clone().unwrap_or_default();
        let id = report.instance.unwrap_or_default();
        let process = report.process.unwrap_or_default();
        let gauges: Vec<String> = report
            .gauges
            .iter()
            .map(|g| {
                format!(
                    "{}={}",
                    g.name.split('.').next_back().unwrap_or(&g.name),
                    gauge_value(g.value)
                )
            })
            .collect();
        out!(
            "{:<11} {:<14} {:<9} {:<5} {:>7} {:>9.1} {:>5} {:>7} {:>8} {:>8.0} {:>6.1}  {}",
            id.service,
            truncate(&id.host, 14),
            truncate(id.instance_id.rsplit('-').next().unwrap_or_default(), 8),
            if status.down { "down" } else { "up" },
            process.pid,
            process.resident_memory_bytes as f64 / (1024.0 * 1024.0),
            process.open_fds,
            process.threads,
            process.child_processes,
            report.uptime_seconds,
            status.received_ms_ago as f64 / 1000.0,
            gauges.join(" "),
        );
    }
    if instances.is_empty() {
        eprintln!("no service has reported yet");
    }
    let firing = telemetry
        .list_alerts(ListAlertsRequest::default())
        .await
        .map_err(status_error)?
        .into_inner()
        .firing;
    if !firing.is_empty() {
        out!("");
        out!("ALERTS FIRING");
        for alert in &firing {
            let id = alert.instance.clone().unwrap_or_default();
            out!(
                "{} {} on {}/{} ({}): {}",
                alert.name,
                alert.subject,
                id.service,
                id.host,
                truncate(id.instance_id.rsplit('-').next().unwrap_or_default(), 8),
                alert.message
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A gauge as people read it: whole numbers as such, others to two decimals.
fn gauge_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// The one line a failed call prints: the status code, then the server's message. A
/// deadline that passes on the client's side (tonic says CANCELLED "Timeout expired") is
/// named for what it is.
pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Cancelled && status.message() == "Timeout expired" {
        return anyhow::anyhow!("DeadlineExceeded: no answer within the deadline (--timeout-ms)");
    }
    // A plaintext client's HTTP/2 preface to a TLS port is dropped by the server: the call
    // ends as cancelled or unavailable with nothing more said.
    let broken = matches!(
        status.code(),
        tonic::Code::Cancelled | tonic::Code::Unavailable
    );
    if broken && !mimo_proto::security::tls_enabled() {
        return anyhow::anyhow!(
            "{:?}: {} (if the services run with TLS, give this command --tls-cert, --tls-key and --tls-ca too)",
            status.code(),
            status.message()
        );
    }
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}
