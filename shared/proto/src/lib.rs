//! Mimo's gRPC API (`proto/mimo/v1`), compiled once for every crate, with the helpers that
//! set message limits and timeouts for clients and servers in one place.

pub mod auth;
pub mod category_names;
pub mod connect;
pub mod security;
pub mod serve;
pub mod trace_context;

/// Generated messages, clients and servers of package `mimo.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("mimo.v1");
}

/// The encoded `FileDescriptorSet` of every Mimo `.proto` file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mimo_descriptor.bin"));

/// Largest gRPC message, in bytes, that Mimo servers and clients accept or send.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Most gauges one resource report may carry (`ResourceReport.gauges`); a reporter sends the
/// first this many.
pub const MAX_GAUGES_PER_REPORT: usize = 1000;
/// Most conditions one resource report may carry (`ResourceReport.conditions`).
pub const MAX_CONDITIONS_PER_REPORT: usize = 256;
/// Longest condition name or subject, in bytes.
pub const MAX_CONDITION_NAME_BYTES: usize = 256;
/// Longest condition message, in bytes.
pub const MAX_CONDITION_MESSAGE_BYTES: usize = 4096;
