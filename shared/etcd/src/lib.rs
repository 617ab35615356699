//! etcd's v3 API as generated clients: [`etcdserverpb::kv_client::KvClient`],
//! [`etcdserverpb::lease_client::LeaseClient`] and [`etcdserverpb::watch_client::WatchClient`],
//! with the messages of `rpc.proto` and `kv.proto`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// etcd's key-value records.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's users and roles (referenced by `rpc.proto`).
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcd's services and their messages.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
