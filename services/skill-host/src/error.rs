//! The skill-host's errors and their one mapping to gRPC status codes.

use crate::mcp::McpError;
use crate::rpc::RpcError;
use tonic::{Code, Status};

/// Everything a skill-host call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SkillHostError {
    /// No skill by that name is configured here.
    #[error("skill {skill:?} is not configured on this host; configured: {configured}")]
    SkillNotFound {
        /// The name asked for.
        skill: String,
        /// The configured names, comma-separated.
        configured: String,
    },
    /// The skill exists but cannot take calls now.
    #[error("skill {skill:?} is {state}{reason}")]
    SkillUnavailable {
        /// The skill.
        skill: String,
        /// Its state, e.g. "failed".
        state: &'static str,
        /// Why, with a leading ": " when known.
        reason: String,
    },
    /// The call's deadline passed while the skill was starting.
    #[error("skill {skill:?} was not ready before the call's deadline (it is {state})")]
    NotReadyInTime {
        /// The skill.
        skill: String,
        /// Its state then.
        state: &'static str,
    },
    /// The skill has no tool by that name.
    #[error("skill {skill:?} has no tool {tool:?}; its tools: {tools}")]
    ToolNotFound {
        /// The skill.
        skill: String,
        /// The tool asked for.
        tool: String,
        /// The skill's tools, comma-separated.
        tools: String,
    },
    /// A skill by that name is already on this host.
    #[error("skill {0:?} already exists on this host; remove it first or pick another name")]
    SkillExists(String),
    /// The host runs as many skills as it may.
    #[error("this host already runs {limit} skills, its limit (max_skills); remove one first")]
    TooManySkills {
        /// The limit.
        limit: usize,
    },
    /// A skill entry given to AddSkill is not valid.
    #[error("{0}")]
    InvalidEntry(String),
    /// The host was started without a skills file, so there is nothing to reload.
    #[error("this host was started without a skills file; there is nothing to reload")]
    NoSkillsFile,
    /// The skills file read for a reload is not valid; nothing was changed.
    #[error("skills file not reloaded, the running skills are unchanged: {0}")]
    InvalidSkills(crate::skills_file::SkillsFileError),
    /// The tool's result does not fit in one gRPC message.
    #[error(
        "skill {skill:?}, tool {tool:?}: the result is {bytes} bytes encoded; the limit is {limit}"
    )]
    ResultTooLarge {
        /// The skill.
        skill: String,
        /// The tool.
        tool: String,
        /// Encoded size of the result.
        bytes: usize,
        /// The gRPC message limit.
        limit: usize,
    },
    /// The call was routed by a registration the skill no longer has.
    #[error("skill {skill:?} is not registered under lease {routed} here (now: {now}); the route is stale: resolve the tool again")]
    StaleRoute {
        /// The skill.
        skill: String,
        /// The lease the caller's route named.
        routed: u64,
        /// The skill's lease now, or "none".
        now: String,
    },
    /// The call's arguments are not a JSON object.
    #[error("arguments_json {0}")]
    InvalidArguments(String),
    /// The skill could not complete the call.
    #[error("skill {skill:?}, tool {tool:?}: {source}")]
    CallFailed {
        /// The skill.
        skill: String,
        /// The tool.
        tool: String,
        /// What went wrong.
        source: McpError,
    },
}

impl From<SkillHostError> for Status {
    fn from(error: SkillHostError) -> Self {
        let code = match &error {
            SkillHostError::SkillNotFound { .. } | SkillHostError::ToolNotFound { .. } => {
                Code::NotFound
            }
            SkillHostError::SkillUnavailable { .. } => Code::Unavailable,
            SkillHostError::NotReadyInTime { .. } => Code::DeadlineExceeded,
            SkillHostError::InvalidArguments(_) | SkillHostError::InvalidEntry(_) => {
                Code::InvalidArgument
            }
            SkillHostError::SkillExists(_) => Code::AlreadyExists,
            SkillHostError::TooManySkills { .. } | SkillHostError::ResultTooLarge { .. } => {
                Code::ResourceExhausted
            }
            SkillHostError::NoSkillsFile
            | SkillHostError::InvalidSkills(_)
            | SkillHostError::StaleRoute { .. } => Code::FailedPrecondition,
            SkillHostError::CallFailed { source, .. } => match source {
                McpError::Rpc { source, .. } => match source {
                    RpcError::Remote { code: -32602, .. } => Code::InvalidArgument,
                    RpcError::Remote { code: -32601, .. } => Code::Unimplemented,
                    RpcError::Remote { .. } | RpcError::Malformed(_) => Code::Unknown,
                    RpcError::Closed | RpcError::Exited(_) => Code::Unavailable,
                    RpcError::Overloaded { .. } | RpcError::AnswerTooLarge { .. } => {
                        Code::ResourceExhausted
                    }
                    RpcError::DeadlineExceeded => Code::DeadlineExceeded,
                },
                McpError::Protocol { .. } => Code::Unknown,
            },
        };
        Status::new(code, error.to_string())
    }
}
