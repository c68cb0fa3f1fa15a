//! The outbox relay: one node at a time (the holder of a PostgreSQL advisory lock)
//! gives committed rows their positions and publishes them to the bus.
//!
//! Mark, then publish: one statement numbers the oldest unpublished committed rows
//! (in insertion order, which within a topic is commit order, see
//! [`event::append`](crate::event::append)) right after the stored cursor, writing
//! each one's position into `outbox_published` (the outbox row itself is never
//! updated), and moves the cursor; only after that commits are they published. A row whose transaction
//! commits late is simply unpublished until then, so nothing is skipped; a row is
//! numbered once, so nothing is published twice under two positions. A leader that
//! dies between marking and publishing leaves a gap that every node fills from the
//! outbox (they watch the cursor).
//!
//! Pruning runs on its own schedule, in bounded batches, and never below what a live
//! node has not delivered or a resumable session may still replay.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tokio::sync::Notify;

use crate::bus::Bus;
use crate::event::Record;

const LOCK: i64 = 7_307_000_004;
/// How often the leader looks for new rows while an append in this process may still
/// be committing (instead of the idle poll).
const HOT_POLL: Duration = Duration::from_millis(5);
/// How long after an append in this process the leader keeps looking that often.
const HOT_FOR: Duration = Duration::from_millis(50);

/// Rows numbered at once from which the leader waits its poll even after an append
/// (about 400 appends a second with the default 20 ms poll): batching wins over a
/// few milliseconds.
const BUSY_ROWS: usize = 8;

/// Appends made in this process, and the relay's cue to look at once.
static APPENDS: AtomicU64 = AtomicU64::new(0);
static APPENDED: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Tells the relay of this process that a transaction appended rows: once it commits,
/// they are numbered and published within [`HOT_POLL`] rather than the idle poll, so a
/// message reaches its channel's sockets in milliseconds. A relay leading on another
/// node does not hear it and finds the rows within its poll.
pub(crate) fn appended() {
    APPENDS.fetch_add(1, Ordering::Release);
    APPENDED.notify_waiters();
}
/// Rows numbered per statement.
const BATCH: i64 = 1000;
/// Rows deleted per pruning statement.
const PRUNE_BATCH: i64 = 5000;

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// How often the leader looks for new rows when idle.
    pub poll: Duration,
    /// Rows younger than this are kept whatever else holds (at least the resume
    /// window's worth of history for sessions whose node died).
    pub retention: Duration,
    /// How often to prune.
    pub prune_every: Duration,
    /// Whether an append in this process makes the leader look soon (at once, then
    /// every [`HOT_POLL`] for [`HOT_FOR`]) rather than at its next poll. In one process
    /// with several nodes (tests), every node's appends wake every leader.
    pub wake: bool,
}

/// Runs forever: competes for leadership, relays while leader.
pub async fn run(url: String, bus: Bus, config: RelayConfig) {
    loop {
        match lead(&url, &bus, config).await {
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, "outbox relay stopped; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ok: bool,
}

async fn lead(url: &str, bus: &Bus, config: RelayConfig) -> anyhow::Result<()> {
    // Its statements are prepared once, but planned each time with their parameters:
    // a generic plan cannot tell how few rows lie above the floor and scans them all.
    // No bitmap scans: every statement here wants rows in id order from an index and
    // stops at a batch. Before statistics caught up with a million appended rows, the
    // planner read a whole hole range as a bitmap and sorted it, for each batch of a
    // thousand (688 ms against 11 ms, EXPLAIN ANALYZE; resume-big's relay took 80 s
    // instead of 23).
    let mut conn = connect(
        url,
        "SET plan_cache_mode = force_custom_plan; SET enable_bitmapscan = off;",
    )
    .await?;
    loop {
        let flag: Flag = synctalk_db::sql("SELECT pg_try_advisory_lock($1) AS ok")
            .bind::<BigInt, _>(LOCK)
            .get_result(&mut conn)
            .await?;
        if flag.ok {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::info!("this node relays the outbox");
    // Pruning runs beside the numbering, on a connection of its own, for as long as
    // this node leads: a long prune (old rows piled up in a quiet spell) never holds
    // up publishing.
    let _pruner = AbortOnDrop(tokio::spawn(prune_forever(url.to_owned(), config)));
    let mut floor = Floor {
        id: stored_floor(&mut conn).await?,
        ..Floor::default()
    };
    // Every id above the floor that is not published yet (the last leader may have
    // published many above it).
    let mut scan = Scan::from(floor.id);
    let last = last_id(&mut conn).await?;
    scan.rebuild(&mut conn, floor.id, last).await?;
    let mut seen = AtomicU64::load(&APPENDS, Ordering::Acquire);
    let mut hot_until = Instant::now();
    // The floor the last numbering stored.
    let mut stored = None;
    loop {
        let last = last_id(&mut conn).await?;
        // Idle: no id handed out since every row up to the floor was published, and
        // the floor stored. A numbering would find nothing, yet write the cursor's row
        // and commit (a WAL flush, 50 times a second at the default poll); reading
        // the sequence writes nothing.
        if floor.reached(last) && stored == Some(floor.id) {
            if config.wake {
                wait(config.poll, &mut seen, &mut hot_until).await;
            } else {
                tokio::time::sleep(config.poll).await;
            }
            continue;
        }
        stored = Some(floor.id);
        let marked = mark(&mut conn, &scan, floor.id).await?;
        floor.settle(last, marked.xid, marked.xmin);
        // A full batch: more is waiting, go on at once. Otherwise wait a poll, so that
        // under load one numbering (and one commit) covers many appends instead of
        // the relay committing after every one or two. Counted over every row the
        // statement numbered, even one it could not read into a record.
        let ids = &marked.numbered;
        let full = ids.len() >= usize::try_from(BATCH).unwrap_or(usize::MAX);
        // Many rows at once: appends come fast enough that waiting the poll batches
        // them (one numbering and one commit for all) at little cost in latency.
        let busy = ids.len() >= BUSY_ROWS;
        floor.advance(full.then(|| ids.last().copied()).flatten());
        scan.passed(ids, full, last);
        scan.settle(floor.id);
        if scan.overflowed() {
            scan.rebuild(&mut conn, floor.id, scan.past).await?;
        }
        if !marked.records.is_empty() {
            // A bus that does not take them in time must not stop the numbering:
            // nodes read what they miss from the outbox.
            if tokio::time::timeout(
                Duration::from_secs(5),
                publish(bus, marked.prev, marked.records),
            )
            .await
            .is_err()
            {
                tracing::warn!("publishing to the bus timed out; nodes catch up from the outbox");
            }
        }
        if !full {
            if config.wake && !busy {
                wait(config.poll, &mut seen, &mut hot_until).await;
            } else {
                tokio::time::sleep(config.poll).await;
            }
        }
    }
}

/// Waits before the next look for rows: [`HOT_POLL`] while an append of this process
/// is recent (its transaction may commit any moment), else until the idle `poll` ends
/// or an append comes (then a millisecond, for its commit).
async fn wait(poll: Duration, seen: &mut u64, hot_until: &mut Instant) {
    let appends = AtomicU64::load(&APPENDS, Ordering::Acquire);
    if appends != *seen {
        *seen = appends;
        *hot_until = Instant::now() + HOT_FOR;
    }
    if Instant::now() < *hot_until {
        tokio::time::sleep(HOT_POLL.min(poll)).await;
        return;
    }
    let notified = APPENDED.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if AtomicU64::load(&APPENDS, Ordering::Acquire) != *seen {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(poll) => {}
        () = notified => tokio::time::sleep(Duration::from_millis(1).min(poll)).await,
    }
}

/// A connection of the relay's own, with `settings` applied. A statement that hangs
/// must not hold the leadership (or the pruning) for ever; none is worth compiling
/// with JIT (see `synctalk_db::SessionLimits`).
async fn connect(url: &str, settings: &str) -> anyhow::Result<AsyncPgConnection> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute(&format!(
        "SET statement_timeout = '30s'; SET jit = off; {settings}"
    ))
    .await?;
    Ok(conn)
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Prunes every `config.prune_every`, reconnecting after a failure.
async fn prune_forever(url: String, config: RelayConfig) {
    let mut conn = None;
    loop {
        tokio::time::sleep(config.prune_every).await;
        if conn.is_none() {
            conn = connect(&url, "")
                .await
                .inspect_err(|error| tracing::warn!(%error, "outbox pruning could not connect"))
                .ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        match prune(c, config.retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "pruned the outbox"),
            Err(error) => {
                tracing::warn!(%error, "outbox pruning failed");
                conn = None;
            }
        }
    }
}

/// Where the relay's scan of unpublished rows starts: every row with an id at or
/// below `id` is published (or was rolled back). Each numbering stores the floor it
/// used in `outbox_relay.floor`, where other readers of unpublished rows start too. The scan walks the index of
/// unpublished rows in id order from there, so it never sorts the backlog, and it
/// skips the entries that rows published since the last vacuum leave behind.
///
/// Ids are handed out before their transaction commits, so a row below the last id
/// published can still appear. The floor moves only past ids whose transactions have
/// all ended. Each poll reads how far the id sequence has gone (`last`), then numbers
/// rows in a statement that takes a transaction id (`xid`) of its own: every row with
/// an id up to `last` belongs to a transaction older than `xid` (an outbox id's default
/// takes the transaction id first, see migration 000011). Once a later statement's
/// snapshot shows no transaction older than `xid` running (its `xmin` is at or past
/// `xid`), each such row is committed and visible to it, or gone.
///
/// This holds while ids come from the sequence one at a time, in transactions that
/// hold their transaction id first (the column's default): a row given an explicit
/// id, or ids cached by a backend (`CACHE` above 1), could fall below the floor
/// unseen; and an idle relay looks again only once the sequence moves.
#[derive(Debug, Default)]
struct Floor {
    id: i64,
    /// `(xid, last)` of past polls, oldest first.
    pending: std::collections::VecDeque<(i64, i64)>,
    /// The highest `last` whose transactions have all ended.
    settled: i64,
}

impl Floor {
    /// Records a poll: `last` read before the numbering statement, which ran as
    /// transaction `xid` with a snapshot whose oldest running transaction was `xmin`.
    fn settle(&mut self, last: i64, xid: i64, xmin: i64) {
        while let Some(&(then_xid, then_last)) = self.pending.front() {
            if xmin < then_xid {
                break;
            }
            self.settled = self.settled.max(then_last);
            self.pending.pop_front();
        }
        // A poll that read no new ids adds nothing to wait for.
        if self.pending.back().map_or(self.settled, |&(_, l)| l) < last {
            self.pending.push_back((xid, last));
        }
    }

    /// Whether every id up to `last` (how far the id sequence has gone) is published
    /// or rolled back: nothing is left to number until the sequence moves on.
    fn reached(&self, last: i64) -> bool {
        self.id >= last && self.pending.is_empty()
    }

    /// After a batch: every settled row up to the batch's highest id (a full batch,
    /// `Some`), or every settled row (`None`: the batch took all there was), is
    /// published.
    fn advance(&mut self, full_up_to: Option<i64>) {
        let reach = full_up_to.map_or(self.settled, |max| max.min(self.settled));
        self.id = self.id.max(reach);
    }
}

/// Where the next numbering looks for unpublished rows: every id above `past`, and the
/// `holes` at or below it, the ids above the floor that a numbering passed without
/// numbering them (their transactions were still running, or rolled back, or they
/// were numbered before). Rows published above the floor are not looked at again, so
/// a transaction that holds the floor back for long (an old id not yet committed)
/// does not make every numbering walk the rows published since.
///
/// Holes are kept as ranges of ids: a backlog (a new leader after a spell without
/// one, or a transaction that wrote many rows) is one range however many rows it
/// holds, and the numbering statement carries the ranges' bounds, not every id (a
/// million ids in an array made each numbering take a second).
///
/// The scan still checks each row it finds against `outbox_published`, so a hole that
/// was published after all is passed over. A new leader starts from the ids above the
/// floor that are not published; a scan that passed more ranges without numbering
/// them than it expects (ids burnt by rolled-back transactions, rows numbered
/// elsewhere) asks the database again which of them are unpublished
/// ([`Scan::rebuild`]).
#[derive(Debug, Default)]
struct Scan {
    past: i64,
    holes: Ranges,
    /// How many hole ranges make the scan ask again: at least [`MAX_HOLES`], and
    /// twice as many as the last answer held (so true holes, say many rolled-back
    /// ids, do not make it ask every poll).
    limit: usize,
}

/// The fewest hole ranges at which a scan asks again which ids are unpublished.
const MAX_HOLES: usize = 1000;

/// Ids as disjoint inclusive ranges, keyed by their first id; two ranges are never
/// adjacent (they would be one).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Ranges(std::collections::BTreeMap<i64, i64>);

impl Ranges {
    /// How many ranges.
    fn len(&self) -> usize {
        self.0.len()
    }

    /// How many ids in all.
    fn ids(&self) -> i64 {
        self.0.iter().map(|(lo, hi)| hi - lo + 1).sum()
    }

    /// Adds `lo..=hi` (nothing if empty), merged with the ranges it overlaps or
    /// touches.
    fn insert(&mut self, lo: i64, hi: i64) {
        if lo > hi {
            return;
        }
        let (mut lo, mut hi) = (lo, hi);
        if let Some((&a, &b)) = self.0.range(..=lo).next_back()
            && b >= lo.saturating_sub(1)
        {
            lo = a;
            hi = hi.max(b);
            self.0.remove(&a);
        }
        while let Some((&a, &b)) = self.0.range(lo..=hi.saturating_add(1)).next() {
            hi = hi.max(b);
            self.0.remove(&a);
        }
        self.0.insert(lo, hi);
    }

    /// Takes `id` out (splitting its range).
    fn remove(&mut self, id: i64) {
        if let Some((&a, &b)) = self.0.range(..=id).next_back()
            && b >= id
        {
            self.0.remove(&a);
            if a < id {
                self.0.insert(a, id - 1);
            }
            if id < b {
                self.0.insert(id + 1, b);
            }
        }
    }

    /// Forgets every id at or below `floor`.
    fn forget_through(&mut self, floor: i64) {
        let above = self.0.split_off(&floor.saturating_add(1));
        let below = std::mem::replace(&mut self.0, above);
        if let Some((_, &hi)) = below.iter().next_back()
            && hi > floor
        {
            self.0.insert(floor + 1, hi);
        }
    }

    /// The first and the last id of each range, for the numbering statement.
    fn bounds(&self) -> (Vec<i64>, Vec<i64>) {
        self.0.iter().map(|(&lo, &hi)| (lo, hi)).unzip()
    }
}

impl Scan {
    /// A scan of every id above `floor`.
    fn from(floor: i64) -> Self {
        Self {
            past: floor,
            holes: Ranges::default(),
            limit: MAX_HOLES,
        }
    }

    /// Whether the holes passed the limit: many of them may be published after all.
    fn overflowed(&self) -> bool {
        self.holes.len() > self.limit
    }

    /// Passes every id up to `to` (how far the id sequence had gone), with the ids
    /// above `floor` that are not published as its holes (still uncommitted, rolled
    /// back, or never used): the gaps between the published ids, read from
    /// `outbox_published` alone (as many rows as were published above the floor,
    /// whatever the backlog).
    async fn rebuild(
        &mut self,
        conn: &mut AsyncPgConnection,
        floor: i64,
        to: i64,
    ) -> diesel::QueryResult<()> {
        #[derive(QueryableByName)]
        struct Gap {
            #[diesel(sql_type = BigInt)]
            lo: i64,
            #[diesel(sql_type = BigInt)]
            hi: i64,
        }
        let to = to.max(self.past).max(floor);
        let gaps: Vec<Gap> = synctalk_db::sql(
            "SELECT lo, hi FROM ( \
               SELECT id + 1 AS lo, lead(id) OVER (ORDER BY id) - 1 AS hi FROM ( \
                 SELECT $1::bigint AS id \
                 UNION ALL SELECT p.id FROM outbox_published p WHERE p.id > $1 AND p.id <= $2 \
                 UNION ALL SELECT $2::bigint + 1 \
               ) AS edges \
             ) AS gaps WHERE hi >= lo",
        )
        .bind::<BigInt, _>(floor)
        .bind::<BigInt, _>(to)
        .load(conn)
        .await?;
        self.past = to;
        self.holes = Ranges::default();
        for gap in gaps {
            self.holes.insert(gap.lo, gap.hi);
        }
        self.limit = MAX_HOLES.max(self.holes.len().saturating_mul(2));
        if self.holes.len() > MAX_HOLES {
            tracing::info!(
                ranges = self.holes.len(),
                ids = self.holes.ids(),
                floor,
                "the outbox relay's scan has many unpublished ids below its reach"
            );
        }
        Ok(())
    }

    /// After a numbering of `numbered` (ascending ids): a full batch passed every id up
    /// to its highest; any other passed every id up to `last` (how far the id sequence
    /// had gone before the statement) and every id it numbered. The ids passed and not
    /// numbered are holes.
    fn passed(&mut self, numbered: &[i64], full: bool, last: i64) {
        let highest = numbered.last().copied().unwrap_or(i64::MIN);
        let reach = if full { highest } else { last.max(highest) };
        for &id in numbered {
            self.holes.remove(id);
        }
        if reach <= self.past {
            return;
        }
        // The gaps between the ids numbered above the old reach.
        let mut next = self.past + 1;
        for &id in numbered.iter().filter(|&&id| id > self.past && id <= reach) {
            self.holes.insert(next, id - 1);
            next = id + 1;
        }
        self.holes.insert(next, reach);
        self.past = reach;
    }

    /// Forgets the holes at or below the floor: every such row is published, or gone.
    fn settle(&mut self, floor: i64) {
        self.holes.forget_through(floor);
        self.past = self.past.max(floor);
    }
}

/// The floor the last leader reached (it stays valid: rows at or below it stay
/// published).
async fn stored_floor(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    crate::event::bigint(conn, "SELECT floor AS value FROM outbox_relay WHERE id = 1").await
}

/// How far the outbox's id sequence has gone.
async fn last_id(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    crate::event::bigint(
        conn,
        "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS value \
         FROM outbox_id_seq",
    )
    .await
}

/// A numbering: the cursor before the records, the records, and the statement's own
/// transaction id and its snapshot's oldest running transaction (see [`Floor`]).
struct Marked {
    prev: i64,
    records: Vec<Record>,
    /// The ids of every row numbered, ascending (a row that could not be read into a
    /// record is numbered all the same).
    numbered: Vec<i64>,
    xid: i64,
    xmin: i64,
}

/// Numbers the oldest unpublished committed rows that `scan` looks at after the
/// cursor, and stores `floor` (see [`Floor`]).
async fn mark(conn: &mut AsyncPgConnection, scan: &Scan, floor: i64) -> anyhow::Result<Marked> {
    use diesel::sql_types::{Array, Nullable, Text};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        xid: i64,
        #[diesel(sql_type = BigInt)]
        xmin: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        id: Option<i64>,
        #[diesel(sql_type = Nullable<BigInt>)]
        position: Option<i64>,
        #[diesel(sql_type = Nullable<Text>)]
        topic: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        kind: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        domain: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        name: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        payload: Option<String>,
    }
    // Whether a row is published is asked row by row (a scalar subquery, never turned
    // into a join): as an anti-join, the planner merged the whole outbox index with
    // the whole published one for every batch (20 ms at 13,000 rows). The holes (a range
    // scan of the index each) and the ids above the scan's reach are index scans. The
    // ranges go in ascending order, each scanned in id order, so the holes come out in
    // id order and their `LIMIT` stops the walk at a batch (a backlog split into many
    // ranges is not read whole at every numbering; were the order ever lost, the rows
    // left out would only wait for a later batch). The picked rows are looked up by
    // id in an array, not joined: the planner sizes a join by statistics that an idle
    // spell leaves near empty, and then joins a thousand rows as if one. Every picked row is visible to the statement, so their
    // positions follow on from the cursor in id order, with no gap. The cursor's row is written
    // every time, so the statement always has a transaction id, and always returns a
    // row (the records, or one row of nulls).
    let (holes_lo, holes_hi) = scan.holes.bounds();
    let rows: Vec<Row> = synctalk_db::sql(
        "WITH cursor AS MATERIALIZED (SELECT position FROM outbox_relay WHERE id = 1 FOR UPDATE), \
         picked AS MATERIALIZED ( \
           SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids FROM ( \
             SELECT id FROM ( \
               (SELECT h.id FROM unnest($3::bigint[], $5::bigint[]) AS r(lo, hi) \
                CROSS JOIN LATERAL ( \
                  SELECT o.id FROM outbox o WHERE o.id >= r.lo AND o.id <= r.hi \
                    AND (SELECT p.id FROM outbox_published p WHERE p.id = o.id) IS NULL \
                  ORDER BY o.id LIMIT $1) AS h \
                LIMIT $1) \
               UNION ALL \
               (SELECT o.id FROM outbox o WHERE o.id > $2 \
                  AND (SELECT p.id FROM outbox_published p WHERE p.id = o.id) IS NULL \
                ORDER BY o.id LIMIT $1) \
             ) AS unpublished ORDER BY id LIMIT $1 \
           ) AS oldest \
         ), \
         numbered AS MATERIALIZED ( \
           SELECT o.id, (SELECT position FROM cursor) + row_number() OVER (ORDER BY o.id) AS position, \
                  o.topic, o.kind, o.domain, o.name, o.payload \
           FROM outbox o WHERE o.id = ANY ((SELECT ids FROM picked)::bigint[]) \
         ), \
         marked AS ( \
           INSERT INTO outbox_published (id, position, topic) \
           SELECT id, position, topic FROM numbered RETURNING id \
         ), \
         moved AS ( \
           UPDATE outbox_relay SET position = position + (SELECT count(*) FROM marked), \
                                   floor = greatest(floor, $4) WHERE id = 1 \
           RETURNING pg_current_xact_id()::text::bigint AS xid, \
                     pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin \
         ) \
         SELECT v.xid, v.xmin, n.id, n.position, n.topic, n.kind, n.domain, n.name, \
                n.payload::text AS payload \
         FROM moved v LEFT JOIN numbered n ON true ORDER BY n.position",
    )
    .bind::<BigInt, _>(BATCH)
    .bind::<BigInt, _>(scan.past)
    .bind::<Array<BigInt>, _>(&holes_lo)
    .bind::<BigInt, _>(floor)
    .bind::<Array<BigInt>, _>(&holes_hi)
    .load(conn)
    .await?;
    let (xid, xmin) = <[Row]>::first(&rows)
        .map(|r| (r.xid, r.xmin))
        .ok_or_else(|| anyhow::anyhow!("the relay's cursor row is missing"))?;
    let first = rows.iter().find_map(|r| r.position);
    let mut numbered: Vec<i64> = rows.iter().filter_map(|r| r.id).collect();
    numbered.sort_unstable();
    let records = rows
        .into_iter()
        .filter_map(|r| {
            Some(Record {
                id: r.id?,
                position: r.position?,
                topic: r.topic?.parse().ok()?,
                kind: serde_json::from_value(serde_json::Value::String(r.kind?)).ok()?,
                domain: crate::Domain::parse(&r.domain?)?,
                name: r.name?.into(),
                payload: serde_json::value::RawValue::from_string(r.payload?).ok()?,
            })
        })
        .collect();
    Ok(Marked {
        prev: first.map_or(0, |p| p - 1),
        records,
        numbered,
        xid,
        xmin,
    })
}

/// Publishes records as messages no larger than the bus allows (see
/// [`Bus::publish_batch`]).
pub async fn publish(bus: &Bus, prev: i64, records: Vec<Record>) {
    bus.publish_batch(prev, records).await;
}

/// Deletes published rows older than `retention` that no live node still has to
/// deliver and no resumable session may replay, a batch at a time. A channel's or a
/// guild's topic keeps its newest row: its id tells whether the channel or guild changed
/// (messaging's history pages compare it), so it must never go back to an older one.
pub async fn prune(conn: &mut AsyncPgConnection, retention: Duration) -> anyhow::Result<usize> {
    // How far every reader is, read once per round: the minimum over every session
    // is a scan of them all, too dear to repeat for each batch. Readers only move
    // forward, so a position safe at the start of the round stays safe.
    #[derive(diesel::QueryableByName)]
    struct Safe {
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        position: Option<i64>,
    }
    let safe: Safe = synctalk_db::sql(
        "SELECT least( \
           (SELECT position FROM outbox_relay WHERE id = 1), \
           (SELECT min(position) FROM gateway_nodes WHERE last_seen_at > now() - interval '30 seconds'), \
           (SELECT min(base_position) FROM gateway_sessions) \
         ) AS position",
    )
    .get_result(conn)
    .await?;
    let Some(safe) = safe.position else {
        return Ok(0);
    };
    let mut total = 0;
    loop {
        let deleted = synctalk_db::sql(
            "WITH gone AS ( \
               DELETE FROM outbox_published WHERE id IN ( \
                 SELECT p.id FROM outbox_published p \
                 CROSS JOIN LATERAL (SELECT o.id, o.topic, o.created_at FROM outbox o \
                                     WHERE o.id = p.id OFFSET 0) AS o \
                 WHERE p.position <= $1 \
                   AND o.created_at < now() - make_interval(secs => $2) \
                   AND (split_part(o.topic, ':', 1) NOT IN ('channel', 'guild') \
                        OR EXISTS (SELECT 1 FROM outbox n WHERE n.topic = o.topic AND n.id > o.id)) \
                 ORDER BY p.position LIMIT $3 \
               ) RETURNING id \
             ) \
             DELETE FROM outbox WHERE id IN (SELECT id FROM gone)",
        )
        .bind::<BigInt, _>(safe)
        .bind::<Double, _>(retention.as_secs_f64())
        .bind::<BigInt, _>(PRUNE_BATCH)
        .execute(conn)
        .await?;
        total += deleted;
        if deleted < usize::try_from(PRUNE_BATCH).unwrap_or(usize::MAX) {
            return Ok(total);
        }
        // Let writers breathe between batches.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{Floor, MAX_HOLES, Ranges, Scan, last_id, mark, stored_floor};

    /// The ids of a scan's holes, one by one.
    fn holes(scan: &Scan) -> Vec<i64> {
        scan.holes.0.iter().flat_map(|(&lo, &hi)| lo..=hi).collect()
    }

    #[test]
    fn a_scan_looks_again_only_at_the_ids_it_passed_without_numbering() {
        let mut scan = Scan::from(10);
        // Ids up to 20 handed out; 13 and 15 not visible yet.
        scan.passed(&[11, 12, 14, 16, 17, 18, 19, 20], false, 20);
        assert_eq!((scan.past, holes(&scan)), (20, vec![13, 15]));
        // 15 commits, and 21 and 22 come: the numbering finds them.
        scan.passed(&[15, 21, 22], false, 22);
        assert_eq!((scan.past, holes(&scan)), (22, vec![13]));
        // A row committed after the id sequence was read is numbered and passed; the
        // ids between that it did not see are holes.
        scan.passed(&[25], false, 23);
        assert_eq!((scan.past, holes(&scan)), (25, vec![13, 23, 24]));
        // A full batch passes only up to its highest id.
        scan.passed(&[13, 26, 27], true, 40);
        assert_eq!((scan.past, holes(&scan)), (27, vec![23, 24]));
        // The floor passing a hole forgets it (rolled back, or numbered before).
        scan.settle(23);
        assert_eq!((scan.past, holes(&scan)), (27, vec![24]));
        scan.settle(30);
        assert_eq!((scan.past, holes(&scan)), (30, vec![]));
        // Too many separate holes: the scan asks which are unpublished.
        let far = 30 + 2 * i64::try_from(MAX_HOLES).unwrap() + 4;
        let every_other: Vec<i64> = (31..=far).step_by(2).collect();
        scan.passed(&every_other, false, far);
        assert!(scan.overflowed());
        assert_eq!(scan.past, far);
    }

    #[test]
    fn a_backlog_passed_without_numbering_is_one_hole_however_long() {
        // A transaction writing a million rows holds ids 101..=1_000_100 while the
        // relay looks: it passes them all, as one range, and does not ask again.
        let mut scan = Scan::from(100);
        scan.passed(&[], false, 1_000_100);
        assert_eq!(
            scan.holes.0.iter().collect::<Vec<_>>(),
            [(&101, &1_000_100)]
        );
        assert!(!scan.overflowed());
        assert_eq!(scan.holes.bounds(), (vec![101], vec![1_000_100]));
        // Once committed, each full batch takes the next thousand from the range's
        // start, and the range shrinks from there.
        let batch: Vec<i64> = (101..=1100).collect();
        scan.passed(&batch, true, 1_000_200);
        assert_eq!(scan.holes.bounds(), (vec![1101], vec![1_000_100]));
        assert_eq!(
            scan.past, 1_000_100,
            "a full batch of holes reaches no further"
        );
        // One row numbered from the middle splits it; the floor trims it.
        scan.passed(&[500_000], false, 1_000_100);
        assert_eq!(
            scan.holes.bounds(),
            (vec![1101, 500_001], vec![499_999, 1_000_100])
        );
        scan.settle(600_000);
        assert_eq!(scan.holes.bounds(), (vec![600_001], vec![1_000_100]));
        assert_eq!(scan.holes.ids(), 400_100);
    }

    /// Appends 3,000 unpublished rows; the first one's id.
    async fn backlog(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "INSERT INTO outbox (topic, kind, domain, name, payload) \
             SELECT 'user:' || gen_random_uuid(), 'event', 'users', 'USER_UPDATE', \
                    json_build_object('n', n) \
             FROM generate_series(1, 3000) AS n ORDER BY n",
        )
        .execute(conn)
        .await
        .unwrap();
        crate::event::bigint(conn, "SELECT min(id) AS value FROM outbox")
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_leader_over_a_backlog_numbers_it_in_id_order_from_two_hole_ranges() {
        use diesel_async::RunQueryDsl;
        let db = synctalk_testkit::TestDb::migrated().await;
        let mut conn = db.connect().await;
        // 3,000 rows waiting, ten of them in the middle published by an earlier leader.
        let base = backlog(&mut conn).await;
        diesel::sql_query(format!(
            "INSERT INTO outbox_published (id, position, topic) \
             SELECT id, 1000000 + id, topic FROM outbox WHERE id BETWEEN {} AND {}",
            base + 1000,
            base + 1009
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        let floor = stored_floor(&mut conn).await.unwrap();
        let last = last_id(&mut conn).await.unwrap();
        assert_eq!(last, base + 2999);
        let mut scan = Scan::from(floor);
        scan.rebuild(&mut conn, floor, last).await.unwrap();
        assert_eq!(
            scan.holes.bounds(),
            (vec![floor + 1, base + 1010], vec![base + 999, last]),
            "the unpublished ids, as ranges"
        );
        let mut order = Vec::new();
        for _ in 0..4 {
            let marked = mark(&mut conn, &scan, floor).await.unwrap();
            let full = marked.numbered.len() >= 1000;
            scan.passed(&marked.numbered, full, last);
            order.extend(marked.records.iter().map(|r| (r.id, r.position)));
        }
        let expected: Vec<i64> = (base..base + 1000).chain(base + 1010..=last).collect();
        assert_eq!(
            order.iter().map(|&(id, _)| id).collect::<Vec<_>>(),
            expected,
            "every unpublished row once, in id order"
        );
        assert!(
            order
                .iter()
                .zip(1..)
                .all(|(&(_, position), n)| position == n),
            "positions follow on without a gap"
        );
        assert_eq!(scan.holes.len(), 0);
    }

    #[tokio::test]
    async fn a_backlog_in_many_hole_ranges_is_numbered_a_batch_at_a_time_in_id_order() {
        use diesel_async::RunQueryDsl;
        let db = synctalk_testkit::TestDb::migrated().await;
        let mut conn = db.connect().await;
        let base = backlog(&mut conn).await;
        // Every other row published already: 1,500 ranges of one unpublished id each.
        diesel::sql_query(format!(
            "INSERT INTO outbox_published (id, position, topic) \
             SELECT id, 1000000 + id, topic FROM outbox WHERE (id - {base}) % 2 = 1"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        let floor = base - 1;
        let last = last_id(&mut conn).await.unwrap();
        let mut scan = Scan::from(floor);
        scan.rebuild(&mut conn, floor, last).await.unwrap();
        assert_eq!(scan.holes.len(), 1500);
        let unpublished: Vec<i64> = (base..=last).step_by(2).collect();
        let marked = mark(&mut conn, &scan, floor).await.unwrap();
        assert_eq!(marked.numbered, unpublished[..1000], "the thousand lowest");
        scan.passed(&marked.numbered, true, last);
        let marked = mark(&mut conn, &scan, floor).await.unwrap();
        assert_eq!(marked.numbered, unpublished[1000..], "then the rest");
        scan.passed(&marked.numbered, false, last);
        assert_eq!(scan.holes.len(), 0);
    }

    #[test]
    fn ranges_merge_what_touches_and_split_what_is_taken_out() {
        let mut ranges = Ranges::default();
        ranges.insert(10, 12);
        ranges.insert(20, 22);
        ranges.insert(5, 4);
        assert_eq!(ranges.bounds(), (vec![10, 20], vec![12, 22]));
        ranges.insert(13, 19);
        assert_eq!(ranges.bounds(), (vec![10], vec![22]));
        ranges.insert(1, 9);
        ranges.insert(23, 23);
        ranges.insert(15, 30);
        assert_eq!(ranges.bounds(), (vec![1], vec![30]));
        ranges.remove(1);
        ranges.remove(30);
        ranges.remove(15);
        ranges.remove(99);
        assert_eq!(ranges.bounds(), (vec![2, 16], vec![14, 29]));
        ranges.forget_through(14);
        assert_eq!(ranges.bounds(), (vec![16], vec![29]));
        ranges.forget_through(20);
        assert_eq!(ranges.bounds(), (vec![21], vec![29]));
        assert_eq!(ranges.ids(), 9);
        ranges.forget_through(29);
        assert_eq!(ranges.len(), 0);
    }

    #[test]
    fn the_floor_passes_ids_only_once_their_transactions_have_ended() {
        let mut floor = Floor::default();
        // Ids up to 10 handed out; the numbering ran as 100, with 95 still running.
        floor.settle(10, 100, 95);
        floor.advance(None);
        assert_eq!(
            floor.id, 0,
            "transactions that may hold ids up to 10 still run"
        );
        // Ids up to 20; numbered as 104; the oldest running is 99.
        floor.settle(20, 104, 99);
        floor.advance(None);
        assert_eq!(floor.id, 0);
        // Nothing older than 100 runs any more: ids up to 10 are settled.
        floor.settle(30, 108, 100);
        floor.advance(None);
        assert_eq!(floor.id, 10);
        // A full batch that reached id 15 (of settled ids up to 20 after this poll)
        // moves the floor only to 15.
        floor.settle(40, 112, 105);
        floor.advance(Some(15));
        assert_eq!(floor.id, 15);
        floor.advance(None);
        assert_eq!(floor.id, 20);
        // Nothing older than 112 runs: ids up to 40 are settled.
        floor.settle(40, 120, 113);
        floor.advance(None);
        assert_eq!(floor.id, 40);
        // New ids up to 50 while nothing new is numbered: they wait for everything
        // below the poll that read them (130), not for a later poll's transaction.
        floor.settle(50, 130, 121);
        floor.settle(50, 135, 129);
        floor.advance(None);
        assert_eq!(floor.id, 40);
        floor.settle(50, 140, 130);
        floor.advance(None);
        assert_eq!(floor.id, 50);
        // The floor never moves back.
        floor.advance(Some(3));
        assert_eq!(floor.id, 50);
        assert!(floor.reached(50), "every id handed out is published");
        assert!(!floor.reached(51), "an id handed out since");
        // Ids up to 60 handed out and settled by a later poll, not yet passed.
        floor.settle(60, 150, 141);
        assert!(!floor.reached(60));
        floor.settle(60, 155, 150);
        assert!(!floor.reached(60), "settled, but not yet numbered");
        floor.advance(None);
        assert!(floor.reached(60));
    }
}
