//! What can go wrong in the gateway, and how each failure reaches an MCP client: in one place.

use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::ErrorData as McpError;

/// A failed gateway operation.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No live tool has this name.
    #[error("no live tool is named {0:?}; tools/list gives the live ones")]
    UnknownTool(String),
    /// A service could not be reached.
    #[error("the {service} at {address} is unreachable: {reason}; the gateway keeps trying to reconnect")]
    Unreachable {
        /// Which service: "registry", "memory" or "skill-host".
        service: &'static str,
        /// Its address.
        address: String,
        /// The transport's or the service's words.
        reason: String,
    },
    /// A service answered with an error.
    #[error("the {service} at {address} answered {code:?}: {message}")]
    Refused {
        /// Which service.
        service: &'static str,
        /// Its address.
        address: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The service's message.
        message: String,
    },
    /// A tool's arguments do not fit its schema.
    #[error("invalid arguments for {tool}: {reason}")]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// What is wrong.
        reason: String,
    },
    /// The client cancelled the call.
    #[error("the call was cancelled by the client")]
    Cancelled,
    /// The MCP transport failed (stdio closed mid-message, a handshake that went wrong).
    #[error("MCP transport: {0}")]
    Transport(String),
}

impl GatewayError {
    /// The error of a failed gRPC call to `service` at `address`.
    pub(crate) fn from_status(
        service: &'static str,
        address: &str,
        status: &tonic::Status,
    ) -> Self {
        let address = address.to_string();
        // A status the client made itself from a transport failure carries that failure as
        // its source; one the service sent (a skill that crashed: UNAVAILABLE) has none.
        if std::error::Error::source(status).is_some() {
            return Self::Unreachable {
                service,
                address,
                reason: with_causes(status),
            };
        }
        Self::Refused {
            service,
            address,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// How a failed tool call is answered: an unknown tool is a protocol error (JSON-RPC
    /// invalid params, as the MCP specification asks); every other failure is a tool result
    /// marked as an error, whose text the client shows to its user and model.
    pub(crate) fn into_call_result(self) -> Result<CallToolResult, McpError> {
        match self {
            Self::UnknownTool(_) => Err(McpError::invalid_params(self.to_string(), None)),
            Self::Cancelled => Err(McpError::internal_error(self.to_string(), None)),
            other => Ok(CallToolResult::error(vec![ContentBlock::text(
                other.to_string(),
            )])),
        }
    }
}

/// A status's message followed by its causes (a transport error's status says only "tcp
/// connect error"; its source says "Connection refused").
fn with_causes(status: &tonic::Status) -> String {
    let mut text = status.message().to_string();
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        let said = error.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        cause = error.source();
    }
    text
}
