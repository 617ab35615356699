//! The registry's errors and their one mapping to gRPC status codes.

use tonic::{Code, Status};

/// Everything a registry operation can refuse.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The lease is unknown: expired, revoked, or granted by an earlier run of the registry.
    #[error("lease {0} not found (expired, revoked, or granted before the registry restarted); grant a new lease and register again")]
    LeaseNotFound(u64),
    /// The requested TTL is outside the allowed range.
    #[error("ttl_ms is {given}; it must lie within {min}..={max}")]
    TtlOutOfRange {
        /// TTL asked for, in ms.
        given: u64,
        /// Smallest allowed, in ms.
        min: u64,
        /// Largest allowed, in ms.
        max: u64,
    },
    /// A bound on leases, skills or tools would be exceeded.
    #[error("{what} limit reached: {current} registered, this request adds {adding}, the limit is {limit}")]
    LimitReached {
        /// What is bounded ("leases", "skills", "tools").
        what: &'static str,
        /// How many exist now.
        current: usize,
        /// How many the request would add.
        adding: usize,
        /// The bound.
        limit: usize,
    },
    /// A skill's catalogue is larger than the registry stores.
    #[error("skill {skill:?}: its catalogue is {bytes} bytes encoded; the limit is {limit}")]
    CatalogueTooLarge {
        /// The skill.
        skill: String,
        /// Encoded size of its tools.
        bytes: usize,
        /// The bound.
        limit: usize,
    },
    /// A request field is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The store of record (etcd) could not be reached or failed.
    #[error("the registry's store is unavailable: {0}")]
    StoreUnavailable(String),
    /// No live skill offers a tool by that public name.
    #[error("tool {0:?} is not registered; ListTools shows the live tools")]
    ToolNotFound(String),
}

impl From<RegistryError> for Status {
    fn from(error: RegistryError) -> Self {
        let code = match &error {
            RegistryError::LeaseNotFound(_) | RegistryError::ToolNotFound(_) => Code::NotFound,
            RegistryError::TtlOutOfRange { .. } | RegistryError::InvalidArgument(_) => {
                Code::InvalidArgument
            }
            RegistryError::LimitReached { .. } | RegistryError::CatalogueTooLarge { .. } => {
                Code::ResourceExhausted
            }
            RegistryError::StoreUnavailable(_) => Code::Unavailable,
        };
        Status::new(code, error.to_string())
    }
}
