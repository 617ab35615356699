//! `mimo`: runs Mimo's services (all together or one each) and talks to them.

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
        )
    );
    init_logging(if is_service { "info" } else { "warn" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_command(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            ExitCode::FAILURE
        }
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
        Command::Status => client::status(&settings).await,
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

/// Logs go to stderr, filtered by `MIMO_LOG` (e.g. `debug`, `mimo_skill_host=trace`).
fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIMO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
