//! Rate limits shared by the nodes of a deployment through Redis, and what a node does
//! when Redis goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::json;
use synctalk_kernel::Secret;
use synctalk_testkit::{Status, TestApp, TestDb};

/// Wrong-password logins alternating between `nodes`; the statuses in order.
async fn attempts(nodes: &[TestApp], count: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..count {
        let res = nodes[i % nodes.len()]
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": format!("nobody{i}"), "password": "wrong password"}),
            )
            .await;
        statuses.push(res.status.as_u16());
    }
    statuses
}

async fn two_nodes(redis: Option<String>) -> Vec<TestApp> {
    let db = Arc::new(TestDb::migrated().await);
    let prefix = format!("test-{}", uuid::Uuid::now_v7().simple());
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let (redis, prefix) = (redis.clone(), prefix.clone());
        nodes.push(
            TestApp::spawn_on(db.clone(), move |s| {
                s.rate_limit_auth_per_minute = 4;
                s.rate_limit_redis_url = redis.map(Secret::new);
                s.rate_limit_redis_prefix = prefix;
            })
            .await,
        );
    }
    // A first request on another limit of each node loads the script into Redis, so
    // that no counted request waits for that.
    for node in &nodes {
        node.get("/api/v1/users/@me", None).await;
    }
    nodes
}

#[actix_web::test]
async fn two_nodes_share_one_limit_through_redis() {
    // Each node on its own: four on each, eight in all.
    let separate = two_nodes(None).await;
    assert_eq!(
        attempts(&separate, 10).await,
        [401, 401, 401, 401, 401, 401, 401, 401, 429, 429]
    );

    // Sharing Redis: four in all, whichever node is asked.
    let shared = two_nodes(Some(synctalk_testkit::redis_url().await)).await;
    assert_eq!(attempts(&shared, 6).await, [401, 401, 401, 401, 429, 429]);
    let refused = shared[1]
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "someone", "password": "wrong password"}),
        )
        .await;
    assert_eq!(refused.code(), "rate_limited");
    let wait: f64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1.0..=15.0).contains(&wait),
        "one request refills in 15 s: {wait}"
    );
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
}

#[actix_web::test]
async fn a_node_falls_back_to_its_own_limits_when_redis_is_gone() {
    // A Redis of this test's own, to stop.
    let (mut redis, url) = synctalk_testkit::own_redis().await;
    let node = two_nodes(Some(url)).await.remove(0);
    assert_eq!(attempts(std::slice::from_ref(&node), 2).await, [401, 401]);
    redis.kill().unwrap();
    redis.wait().unwrap();

    // Requests still get answers, and the node's own limit of four still holds (less
    // whatever of the first two the node already counted itself, had Redis been slow).
    let statuses = attempts(std::slice::from_ref(&node), 6).await;
    let allowed = statuses.iter().take_while(|s| **s == 401).count();
    assert!((2..=4).contains(&allowed), "{statuses:?}");
    assert!(
        statuses[allowed..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    assert_eq!(node.get("/health", None).await.status, Status::OK);
}
