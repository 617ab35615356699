//! Mimo's gRPC API (`proto/mimo/v1`), compiled once for every crate, with the helpers that
//! set message limits and timeouts for clients and servers in one place.

pub mod connect;
pub mod serve;

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
