//! Friendships written straight into the database, for benches whose sessions should
//! listen to many topics (`synctalk-load idle --friends N`).

/// Makes every user in each consecutive group of `friends + 1` of `ids` a friend of
/// every other one in the group (two `relationships` rows per pair, kind `friend`), in
/// one statement. With `ids.len()` a multiple of `friends + 1`, everyone has exactly
/// `friends` friends. Returns the rows written.
pub(crate) async fn befriend(
    db: &tokio_postgres::Client,
    ids: &[String],
    friends: usize,
) -> anyhow::Result<u64> {
    let (mut users, mut others) = (Vec::new(), Vec::new());
    for group in ids.chunks(friends + 1) {
        for a in group {
            for b in group {
                if a != b {
                    users.push(a.clone());
                    others.push(b.clone());
                }
            }
        }
    }
    let rows = db
        .execute(
            "INSERT INTO relationships (user_id, other_id, kind) \
             SELECT u::uuid, o::uuid, 'friend' FROM unnest($1::text[], $2::text[]) AS r(u, o)",
            &[&users, &others],
        )
        .await?;
    Ok(rows)
}
