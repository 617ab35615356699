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
            SkillHostError::InvalidArguments(_) => Code::InvalidArgument,
            SkillHostError::CallFailed { source, .. } => match source {
                McpError::Rpc { source, .. } => match source {
                    RpcError::Remote { code: -32602, .. } => Code::InvalidArgument,
                    RpcError::Remote { code: -32601, .. } => Code::Unimplemented,
                    RpcError::Remote { .. } | RpcError::Malformed(_) => Code::Unknown,
                    RpcError::Closed => Code::Unavailable,
                    RpcError::DeadlineExceeded => Code::DeadlineExceeded,
                },
                McpError::Protocol { .. } => Code::Unknown,
            },
        };
        Status::new(code, error.to_string())
    }
}
