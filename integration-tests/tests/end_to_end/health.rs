//! What every service serves beside its own API, as generic gRPC tooling uses it: the
//! standard health service (`grpc.health.v1`), server reflection, and a bounded drain.

use super::PATIENCE;
use mimo_integration_tests::ClusterBuilder;
use mimo_proto::connect::{self, Channel};
use mimo_proto::v1::{Category, StoreRequest};
use prost::Message;
use std::time::Duration;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

async fn channel(address: &str) -> Channel {
    connect::channel(address).await.expect("connect")
}

/// The status `client` reports for `service`, or the gRPC code it refused with.
async fn health_of(client: &mut HealthClient<Channel>, service: &str) -> Result<i32, Code> {
    client
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map(|answer| answer.into_inner().status)
        .map_err(|status| status.code())
}

/// Asks reflection at `address` one question and returns its answer.
async fn reflect(address: &str, question: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel(address).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(question),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection stream opens")
        .into_inner();
    answers
        .message()
        .await
        .expect("reflection answers")
        .expect("one answer")
        .message_response
        .expect("answer has a body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_health_and_reflection_of_its_own_api() {
    let cluster = ClusterBuilder::default().start().await;
    let services = [
        (&cluster.registry, "mimo.v1.Registry"),
        (&cluster.telemetry, "mimo.v1.Telemetry"),
        (&cluster.memory, "mimo.v1.Memory"),
        (&cluster.skill_host, "mimo.v1.SkillHost"),
    ];
    for (address, service) in services {
        let mut health = HealthClient::new(channel(address).await);
        assert_eq!(
            health_of(&mut health, "").await,
            Ok(ServingStatus::Serving as i32),
            "{service} at {address}: the server as a whole"
        );
        assert_eq!(
            health_of(&mut health, service).await,
            Ok(ServingStatus::Serving as i32),
            "{service} at {address}"
        );
        assert_eq!(
            health_of(&mut health, "mimo.v1.NoSuchService").await,
            Err(Code::NotFound),
            "{service} at {address}: a service it does not serve"
        );

        let MessageResponse::ListServicesResponse(listed) =
            reflect(address, MessageRequest::ListServices(String::new())).await
        else {
            panic!("{service}: ListServices answered with something else");
        };
        let names: Vec<String> = listed.service.into_iter().map(|s| s.name).collect();
        for expected in [service, "grpc.health.v1.Health"] {
            assert!(
                names.iter().any(|name| name == expected),
                "{service} at {address} lists {names:?}, without {expected}"
            );
        }

        // A generic client can learn every method from the server alone.
        let MessageResponse::FileDescriptorResponse(files) = reflect(
            address,
            MessageRequest::FileContainingSymbol(service.into()),
        )
        .await
        else {
            panic!("{service}: FileContainingSymbol answered with something else");
        };
        let short_name = service.trim_start_matches("mimo.v1.");
        let described = files.file_descriptor_proto.iter().any(|bytes| {
            prost_types::FileDescriptorProto::decode(bytes.as_slice())
                .expect("reflection sends valid descriptors")
                .service
                .iter()
                .any(|s| s.name() == short_name && !s.method.is_empty())
        });
        assert!(described, "{service}: no descriptor with its methods");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_tells_health_watchers_and_does_not_wait_forever_on_an_idle_stream() {
    let cluster = ClusterBuilder::default().start().await;
    let memory_address = cluster.memory.clone();
    let mut health = HealthClient::new(channel(&memory_address).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "mimo.v1.Memory".into(),
        })
        .await
        .expect("health watch opens")
        .into_inner();
    let first = watch.message().await.expect("watch answers");
    assert_eq!(first.map(|m| m.status), Some(ServingStatus::Serving as i32));

    // A client that opened a store stream, stored one engram, and then sent nothing more
    // while keeping the stream open: without a drain deadline the memory would wait on it
    // for ever.
    let mut memory = connect::memory(channel(&memory_address).await);
    let (sender, requests) = tokio::sync::mpsc::channel(4);
    sender
        .send(StoreRequest {
            content: "stored before the stop".into(),
            category: Category::Fact as i32,
            ..Default::default()
        })
        .await
        .expect("queue a store");
    let mut answers = memory
        .store_stream(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .expect("store stream opens")
        .into_inner();
    let stored = tokio::time::timeout(PATIENCE, answers.message())
        .await
        .expect("store acknowledged in time")
        .expect("store stream answers")
        .expect("one answer");
    assert!(
        stored.engram.is_some_and(|engram| !engram.id.is_empty()),
        "the store was acknowledged with its engram"
    );

    // `stop` panics unless every service ends, without error, within its own bound.
    let stopping = tokio::spawn(cluster.stop());
    let mut statuses = Vec::new();
    loop {
        let next = tokio::time::timeout(PATIENCE, watch.message())
            .await
            .expect("the watch moves on once the memory stops");
        match next {
            Ok(Some(message)) => statuses.push(message.status),
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&(ServingStatus::NotServing as i32)),
        "the watch's last word before it ended: {statuses:?}"
    );
    tokio::time::timeout(PATIENCE + Duration::from_secs(60), stopping)
        .await
        .expect("the cluster stops although a store stream stays open")
        .expect("stop did not panic");
    drop(sender);
}
