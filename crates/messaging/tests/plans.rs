//! A history page is a prepared statement PostgreSQL plans once per connection: with
//! its `LIMIT` bound as a parameter, the generic plan's estimate (a tenth of the rows)
//! never beat the custom plans', so every page was planned afresh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use synctalk_kernel::ChannelId;
use synctalk_messaging::read::{self, MessagePage};
use synctalk_testkit::TestApp;
use uuid::Uuid;

#[derive(QueryableByName)]
struct Plans {
    #[diesel(sql_type = BigInt)]
    generic_plans: i64,
    #[diesel(sql_type = BigInt)]
    custom_plans: i64,
}

#[derive(QueryableByName)]
struct Marked {
    #[diesel(sql_type = BigInt)]
    marked: i64,
}

fn page(before: Option<Uuid>) -> MessagePage {
    MessagePage {
        limit: 50,
        before,
        after: None,
        around: None,
    }
}

#[actix_web::test]
async fn a_page_is_planned_once_per_connection() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    let mut conn = app.db.connect().await;
    // 31 channels of 3,000 messages each (a page reads under 2% of a channel).
    conn.batch_execute(&format!(
        "INSERT INTO channels (id, kind, guild_id, name) \
         SELECT gen_random_uuid(), 'text', guild_id, 'c' || i \
         FROM channels, generate_series(1, 30) i WHERE id = '{general}'; \
         INSERT INTO messages (channel_id, id, author_id, content) \
         SELECT c.id, ('01000000-0000-7000-' || lpad(to_hex(n), 4, '0') || '-' \
                       || lpad(to_hex(i), 12, '0'))::uuid, '{owner}', 'hello ' || i \
         FROM (SELECT id, row_number() OVER () AS n FROM channels \
               WHERE id = '{general}' OR name LIKE 'c%') c, \
              generate_series(1, 3000) i; \
         ANALYZE messages;",
        owner = owner.id,
    ))
    .await
    .unwrap();

    let channel = ChannelId(Uuid::parse_str(&general).unwrap());
    // Eight times each shape of the usual page: the newest, and the next older.
    let newest = read::page(&conn, channel, page(None)).await.unwrap();
    let older = newest[49].id.0;
    for _ in 0..8 {
        let rows = read::page(&conn, channel, page(None)).await.unwrap();
        assert_eq!(rows.len(), 50);
        let rows = read::page(&conn, channel, page(Some(older))).await.unwrap();
        assert_eq!(rows.len(), 50);
        assert!(rows[0].id.0 < older);
    }
    let plans: Vec<Plans> = diesel::sql_query(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE statement LIKE '%\"messages\"%ORDER BY \"messages\".\"id\" DESC LIMIT 50'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(plans.len(), 2, "both page statements are prepared");
    for p in &plans {
        // PostgreSQL tries five custom plans before it weighs the generic one.
        assert!(
            p.custom_plans <= 5 && p.generic_plans >= 1,
            "planned afresh: {} custom, {} generic",
            p.custom_plans,
            p.generic_plans
        );
    }
}

/// A page reads reactions only of messages marked as having some; the mark is kept by
/// the database for every writer (a node of an older version, a statement by hand).
#[actix_web::test]
async fn reactions_written_by_any_writer_show_on_pages() {
    // Pages from the table: a write by hand appends no event, and a node's memory of the
    // channel's newest messages is trusted for up to a minute after it was read (tail.rs).
    let app = TestApp::spawn_with(|s| s.message_cache_mb = 0).await;
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    let id = app.send_message(&owner, &general, "react to me").await;
    let page = || async {
        let res = app
            .get(
                &format!("/api/v1/channels/{general}/messages?limit=10"),
                Some(&owner.access_token),
            )
            .await;
        assert_eq!(res.status, synctalk_testkit::Status::OK, "{}", res.text);
        res.body[0]["reactions"].clone()
    };
    assert_eq!(page().await, serde_json::json!([]));
    let mut conn = app.db.connect().await;
    conn.batch_execute(&format!(
        "INSERT INTO reactions (channel_id, message_id, emoji, user_id) \
         VALUES ('{general}', '{id}', '🎉', '{owner}')",
        owner = owner.id,
    ))
    .await
    .unwrap();
    assert_eq!(
        page().await,
        serde_json::json!([{"emoji": "🎉", "count": 1, "me": true}])
    );
    conn.batch_execute(&format!(
        "DELETE FROM reactions WHERE channel_id = '{general}' AND message_id = '{id}'"
    ))
    .await
    .unwrap();
    assert_eq!(page().await, serde_json::json!([]));
    let marked: Marked = diesel::sql_query(format!(
        "SELECT count(*) FILTER (WHERE has_reactions) AS marked FROM messages \
         WHERE channel_id = '{general}'"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(marked.marked, 0, "unmarked once the last one is gone");
}
