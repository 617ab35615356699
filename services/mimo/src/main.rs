//! `mimo`: runs Mimo's services (all together or one each) and talks to them.

mod certs;
mod cli;
mod client;
mod memory_commands;
mod output;
mod run;
mod settings;

use clap::Parser;
use cli::{Cli, Command};
use settings::Settings;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_service = matches!(
        cli.command,
        None | Some(
            Command::Up { .. }
                | Command::Registry
                | Command::SkillHost
                | Command::Telemetry
                | Command::Memory { action: None }
                | Command::Mcp(_)
        )
    );
    let service = service_name(cli.command.as_ref());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the trace exporter's connection lives on it.
    let telemetry = {
        let _inside = runtime.enter();
        mimo_otel::install(
            service,
            "MIMO_LOG",
            if is_service { "info" } else { "warn" },
        )
    };
    // A client command is one trace: its calls to the services are children of this span.
    let root = if is_service {
        tracing::Span::none()
    } else {
        let words: Vec<String> = std::env::args()
            .skip(1)
            .filter(|word| !word.starts_with('-'))
            .take(2)
            .collect();
        tracing::info_span!("mimo.cli", otel.name = %format_args!("mimo {}", words.join(" ")))
    };
    let code = match runtime.block_on(tracing::Instrument::instrument(run_command(cli), root)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    };
    if is_service {
        telemetry.shutdown();
    } else {
        // A command's few spans: not worth holding the prompt for long.
        telemetry.shutdown_within(std::time::Duration::from_secs(1));
    }
    // A read of stdin (`mimo mcp`) blocks a thread until a line or the end comes: do not
    // wait for it once everything else has stopped.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// Makes every server and channel of this process use the TLS and tokens configured.
fn install_security(settings: &settings::Effective) -> anyhow::Result<()> {
    let security = &settings.security;
    if security.tls.is_none() && !security.accepted_tokens.is_empty() {
        tracing::warn!(
            "accepting bearer tokens without TLS: tokens travel in plaintext; configure --tls-cert, --tls-key and --tls-ca"
        );
    }
    mimo_proto::security::install(security.clone())?;
    Ok(())
}

/// The name this process's traces carry (`service.name`) unless `OTEL_SERVICE_NAME` gives one.
fn service_name(command: Option<&Command>) -> &'static str {
    match command {
        None | Some(Command::Up { .. }) => "mimo",
        Some(Command::Registry) => "mimo-registry",
        Some(Command::SkillHost) => "mimo-skill-host",
        Some(Command::Memory { action: None }) => "mimo-memory",
        Some(Command::Telemetry) => "mimo-telemetry",
        Some(Command::Mcp(_)) => "mimo-mcp",
        Some(_) => "mimo-cli",
    }
}

async fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = match &cli.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let settings = cli.settings.or(file).resolve()?;
    if cli.print_config {
        output::line(format_args!("{}", settings.to_toml().trim_end()));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(command) = cli.command else {
        anyhow::bail!("give a command (up, tools, memory, status, ...); see mimo --help");
    };
    install_security(&settings)?;
    match command {
        Command::Up { ready_file } => run::up(settings, ready_file).await,
        Command::Registry => run::registry(settings).await,
        Command::SkillHost => run::skill_host(settings).await,
        Command::Memory { action: None } => run::memory(settings).await,
        Command::Telemetry => run::telemetry(settings).await,
        Command::Memory {
            action: Some(cli::MemoryAction::Reembed),
        } => memory_commands::reembed(&settings).await,
        Command::Memory {
            action: Some(action),
        } => client::memory(&settings, action).await,
        Command::Tools { action } => client::tools(&settings, action).await,
        Command::Skills { action } => client::skills(&settings, action).await,
        Command::Mcp(args) => run::mcp(settings, args).await,
        Command::Status => client::status(&settings).await,
        Command::Top {
            interval_ms,
            iterations,
        } => client::top(&settings, interval_ms, iterations).await,
        Command::Health { addresses, service } => {
            client::health(&settings, addresses, &service).await
        }
        Command::Certs {
            action: cli::CertsAction::Dev(args),
        } => certs::dev(&args),
    }
}

/// The error and its causes on one line, leaving out a cause whose text the message before
/// it already quotes (many errors include their source's text).
fn error_chain(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line = format!("{line}: {cause}");
        }
    }
    line
}
