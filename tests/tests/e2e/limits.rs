//! A peer cannot take more than its share: calls on one connection are
//! bounded by `max_streams_per_connection`.

use std::time::Duration;

use rollguard_proto::v1 as pb;
use rollguard_tests::{test_dir, Coordinator};

#[test]
fn calls_past_the_stream_limit_wait_for_a_free_stream() {
    let root = test_dir("stream-limit");
    let coordinator =
        Coordinator::start(&root.join("data"), Some("max_streams_per_connection = 2\n"))
            .expect("coordinator");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(coordinator.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut client = pb::control_service_client::ControlServiceClient::new(channel);
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut watch = client
                .watch_fleet_status(pb::WatchFleetStatusRequest::default())
                .await
                .expect("watch")
                .into_inner();
            watch.message().await.expect("a frame").expect("a frame");
            open.push(watch);
        }
        // The third call on the same connection is not served while two are open.
        let mut third_client = client.clone();
        let third = tokio::spawn(async move {
            third_client
                .get_fleet_status(pb::GetFleetStatusRequest::default())
                .await
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !third.is_finished(),
            "a third stream was served past the limit"
        );
        drop(open.pop());
        let answered = tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .expect("served once a stream is free")
            .expect("joined");
        assert!(answered.is_ok(), "{answered:?}");
    });
}
