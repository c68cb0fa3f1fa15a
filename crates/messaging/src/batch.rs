//! Sends that arrive together are written together: a send that comes while this
//! thread's (an HTTP worker's) drivers are busy committing waits, and the sends that
//! waited go in one transaction, their statements pipelined over one connection: one
//! `BEGIN`, one `COMMIT` (one WAL flush), one outbox append and four round trips for
//! all of them instead of for each. A send that comes while a driver is free goes at
//! once, alone. A send into a channel a batch of this thread is writing waits for the
//! next batch instead of starting one that would wait for the first one's lock.
//!
//! Each send is checked on its own first (`service::prepare`, no locks): a refusal
//! (403, 404, 409) is that send's answer and writes nothing. Only then are the channels
//! of the allowed sends locked, in the outbox's fixed order (so batches on different
//! connections never deadlock; waiting at most `LOCK_WAIT`), and their newest ids
//! read; ids are given in the batch,
//! each above the one before in its channel. A send that notifies anyone (a DM or group
//! DM, a mention, a channel someone follows at "all messages") runs alone instead:
//! its notifications lock its recipients' topics, and locks taken send by send inside
//! one transaction could cross another transaction's. Files go alone too (attaching
//! them can refuse after the row is written). If anything fails in the shared
//! transaction, it is rolled back and each of its sends runs again alone, so no send
//! is refused or lost because of another; if the `COMMIT` went out unanswered, each
//! answers 503 (it may stand: a retry with the nonce finds it).

use std::cell::RefCell;
use std::collections::HashMap;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use synctalk_db::Pool;
use synctalk_gateway::{Outgoing, Topic, event};
use synctalk_kernel::{AppError, AppResult, ChannelId, MessageId, UserId};
use tokio::sync::oneshot;

use crate::dto::Message;
use crate::service::{self, NewMessage, Prepared};

/// The most sends one transaction takes.
const MAX: usize = 64;
/// Transactions of sends a thread runs at once.
const DRIVERS: usize = 2;
/// How long a batch waits for its channels' locks (for the rest of its transaction).
const LOCK_WAIT: &str = "SET LOCAL lock_timeout = '2s'";
/// How long sends wait for a batch into their channel before they start one of their
/// own anyway (a batch whose connection stopped answering holds no one for longer).
const BUSY_AT_MOST: std::time::Duration = std::time::Duration::from_secs(4);

type Answer = AppResult<(Message, bool)>;

struct Pending {
    author: UserId,
    channel: ChannelId,
    new: NewMessage,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// Tasks of this thread writing batches.
    drivers: usize,
    /// The channels of the batches in flight on this thread: how many each is in, and
    /// since when.
    busy: HashMap<ChannelId, (usize, std::time::Instant)>,
}

impl Queue {
    /// The next batch: the first `MAX` waiting sends into channels no batch of this
    /// thread is writing, their channels then marked busy. A send into a busy channel
    /// waits for that batch to end (its driver takes the queue again then): two
    /// batches into one channel would only wait for each other's lock, and a hot
    /// channel's sends go in fewer, larger transactions, one lock hold for all. A
    /// channel busy for longer than `BUSY_AT_MOST` holds back no send.
    fn take(&mut self) -> Vec<Pending> {
        let (mut batch, mut left) = (Vec::new(), Vec::new());
        for pending in self.pending.drain(..) {
            let held = self
                .busy
                .get(&pending.channel)
                .is_some_and(|(_, since)| since.elapsed() < BUSY_AT_MOST);
            if batch.len() < MAX && !held {
                batch.push(pending);
            } else {
                left.push(pending);
            }
        }
        self.pending = left;
        for pending in &batch {
            self.busy
                .entry(pending.channel)
                .or_insert((0, std::time::Instant::now()))
                .0 += 1;
        }
        batch
    }

    fn release(&mut self, channels: &[ChannelId]) {
        for channel in channels {
            if let Some((n, _)) = self.busy.get_mut(channel) {
                *n -= 1;
                if *n == 0 {
                    self.busy.remove(channel);
                }
            }
        }
    }
}

/// A batch's channels, marked busy on this thread until its transaction ends, however
/// it ends (the sends it hands on to run alone after it are not covered).
struct Busy(Vec<ChannelId>);

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = QUEUE.try_with(|queue| queue.borrow_mut().release(&self.0));
    }
}

thread_local! {
    static QUEUE: RefCell<Queue> = RefCell::new(Queue::default());
}

/// Sends a message as [`service::send`] does, in a transaction shared with the sends
/// of this thread that wait for one. Call it on an actix-web worker (or any thread
/// with a local task set), always with that worker's own pool: the thread's batches
/// run on the pool of the send that started their driver.
pub async fn send(
    pool: &Pool,
    author: UserId,
    channel: ChannelId,
    new: NewMessage,
) -> AppResult<(Message, bool)> {
    if !new.attachment_ids.is_empty() {
        return alone(pool, author, channel, new).await;
    }
    let (answer, answered) = oneshot::channel();
    let start = QUEUE.with_borrow_mut(|queue| {
        queue.pending.push(Pending {
            author,
            channel,
            new,
            answer,
        });
        let start = queue.drivers < DRIVERS;
        if start {
            queue.drivers += 1;
        }
        start
    });
    if start {
        // Counted before it is spawned: if it never runs, its drop still uncounts it.
        let driving = Driving;
        actix_web::rt::spawn(drive(pool.clone(), driving));
    }
    answered.await.unwrap_or_else(|_| {
        Err(AppError::internal(anyhow::anyhow!(
            "a batch of sends stopped before answering"
        )))
    })
}

/// One driver of the thread's queue, uncounted when it ends, however it ends. The last
/// to end with sends still queued (after a panic) answers them 503.
struct Driving;

impl Drop for Driving {
    fn drop(&mut self) {
        let stranded = QUEUE
            .try_with(|queue| {
                let mut queue = queue.borrow_mut();
                queue.drivers = queue.drivers.saturating_sub(1);
                if queue.drivers == 0 {
                    std::mem::take(&mut queue.pending)
                } else {
                    Vec::new()
                }
            })
            .unwrap_or_default();
        for pending in stranded {
            let _ = pending.answer.send(Err(unavailable()));
        }
    }
}

fn unavailable() -> AppError {
    AppError::unavailable(
        "the send could not be made now; retry (with its nonce)",
        1000,
    )
}

/// Writes the waiting sends, a batch at a time, until none wait.
async fn drive(pool: Pool, driving: Driving) {
    let _driving = driving;
    loop {
        // Sends already under way on this thread join this batch.
        tokio::task::yield_now().await;
        let batch: Vec<Pending> = QUEUE.with_borrow_mut(Queue::take);
        if batch.is_empty() {
            return;
        }
        let _busy = Busy(batch.iter().map(|p| p.channel).collect());
        // A send whose client has gone is not made.
        let batch: Vec<Pending> = batch
            .into_iter()
            .filter(|p| !p.answer.is_closed())
            .collect();
        run(&pool, batch).await;
    }
}

async fn run(pool: &Pool, mut batch: Vec<Pending>) {
    if batch.len() <= 1 {
        if let Some(one) = batch.pop() {
            let answer = alone(pool, one.author, one.channel, one.new).await;
            let _ = one.answer.send(answer);
        }
        return;
    }
    let items: Vec<(UserId, ChannelId, NewMessage)> = batch
        .iter()
        .map(|p| (p.author, p.channel, p.new.clone()))
        .collect();
    let mut conn = match synctalk_db::conn(pool).await {
        Ok(conn) => conn,
        Err(error) => {
            // Nothing began: every send answers as a send alone would.
            let error = AppError::from(error);
            tracing::warn!(%error, sends = batch.len(), "no connection for a batch of sends");
            for pending in batch {
                let _ = pending.answer.send(Err(unavailable()));
            }
            return;
        }
    };
    match together(&mut conn, items).await {
        Ok(answers) => {
            let made = answers
                .iter()
                .filter(|a| matches!(a, Some(Ok((_, true)))))
                .count();
            metrics::counter!("message_sends_batched_total").increment(made as u64);
            for (pending, answer) in batch.into_iter().zip(answers) {
                match answer {
                    Some(answer) => {
                        let _ = pending.answer.send(answer);
                    }
                    None => spawn_alone(pool, pending),
                }
            }
        }
        // Its COMMIT went out unanswered: it may stand, so nothing runs again (a send
        // without a nonce would be made twice); each answers 503, and a client retries
        // with its nonce.
        Err(error) if synctalk_db::outcome_unknown(&mut conn) => {
            tracing::warn!(%error, sends = batch.len(), "a batch of sends ended unanswered");
            for pending in batch {
                let _ = pending.answer.send(Err(unavailable()));
            }
        }
        Err(_) => {
            // Rolled back: each on its own, none refused because of another.
            metrics::counter!("message_send_batches_failed_total").increment(1);
            drop(conn);
            for pending in batch {
                spawn_alone(pool, pending);
            }
        }
    }
}

/// Runs one send alone, in a task of its own (a slow one holds up no batch).
fn spawn_alone(pool: &Pool, pending: Pending) {
    if pending.answer.is_closed() {
        return;
    }
    let pool = pool.clone();
    actix_web::rt::spawn(async move {
        let answer = alone(&pool, pending.author, pending.channel, pending.new).await;
        let _ = pending.answer.send(answer);
    });
}

async fn alone(pool: &Pool, author: UserId, channel: ChannelId, new: NewMessage) -> Answer {
    let mut conn = synctalk_db::conn(pool).await?;
    service::send(&mut conn, author, channel, new).await
}

/// The sends in one transaction: each one's answer (`None`: it notifies someone, run
/// it alone), or an error when the transaction failed (nothing was written).
///
/// Set by set: the plain sends' checks (see [`service::plain`]) are two statements
/// for all of them, their followers one, and the rows of those that notify no one one
/// INSERT (with one read of their authors); a send that names more is checked and
/// written as a send alone is, in the same round trips.
async fn together(
    conn: &mut AsyncPgConnection,
    items: Vec<(UserId, ChannelId, NewMessage)>,
) -> AppResult<Vec<Option<Answer>>> {
    event::transaction(conn, async |shared: &AsyncPgConnection| {
        // Every send's checks, with BEGIN: one round trip, no locks.
        let count = items.len();
        let (plain, other): (Vec<_>, Vec<_>) = items
            .into_iter()
            .enumerate()
            .partition(|(_, (_, _, new))| service::plain(new));
        let (places, plain): (Vec<usize>, Vec<_>) = plain.into_iter().unzip();
        let (checked, others) = futures_util::join!(
            service::prepare_many(shared, plain),
            futures_util::future::join_all(other.into_iter().map(
                async |(i, (author, channel, new))| {
                    let prepared = service::prepare(shared, author, channel, new).await;
                    (i, prepared.map(Some))
                }
            )),
        );
        let mut prepared: Vec<Option<AppResult<Option<Prepared>>>> =
            (0..count).map(|_| None).collect();
        for (i, one) in places.into_iter().zip(checked?).chain(others) {
            prepared[i] = Some(one);
        }
        let mut answers: Vec<Option<Answer>> = Vec::with_capacity(count);
        let mut ready = Vec::new();
        for (i, prepared) in prepared.into_iter().enumerate() {
            let prepared = prepared.unwrap_or_else(|| {
                Err(AppError::internal(anyhow::anyhow!(
                    "a send was not checked"
                )))
            });
            match prepared {
                Ok(Some(Prepared::Retried(message))) => {
                    answers.push(Some(Ok((*message, false))));
                }
                // It runs alone (after this transaction).
                Ok(None) => answers.push(None),
                Ok(Some(Prepared::Ready(send))) if send.notifies() => answers.push(None),
                Ok(Some(Prepared::Ready(send))) => {
                    answers.push(None);
                    ready.push((i, *send));
                }
                // A refusal answers that send; it wrote nothing.
                Err(refused) if refused.code().status().is_client_error() => {
                    answers.push(Some(Err(refused)));
                }
                Err(failed) => return Err(failed),
            }
        }
        // The allowed sends' channels locked, then (under the locks) their newest ids
        // and whether anyone else follows them at "all messages": one round trip.
        let channels: Vec<ChannelId> = ready.iter().map(|(_, r)| r.channel).collect();
        let topics: Vec<Topic> = channels.iter().map(|c| Topic::Channel(*c)).collect();
        // (Every ready send is in a guild channel: one elsewhere notifies.)
        let followed = ready
            .iter()
            .map(|(_, r)| {
                r.followed().ok_or_else(|| {
                    AppError::internal(anyhow::anyhow!(
                        "a send that notifies no one outside a guild"
                    ))
                })
            })
            .collect::<AppResult<Vec<_>>>()?;
        // A batch waits for its channels' locks only so long: a channel held longer
        // (a slow transaction) must not hold up the worker's other sends; the batch
        // then runs again send by send, each waiting as long as a send alone does.
        let (bounded, locked, newest, followed) = futures_util::join!(
            synctalk_db::sql(LOCK_WAIT).execute(&mut &*shared),
            event::lock_topics(shared, &topics),
            service::newest_ids(shared, &channels),
            synctalk_notifications::settings::others_wanting_all(shared, &followed),
        );
        bounded?;
        locked?;
        let mut newest: HashMap<ChannelId, MessageId> = newest?.into_iter().collect();
        // Ids in the order of the batch, each above the one before in its channel.
        let (mut many, mut each) = (Vec::new(), Vec::new());
        let mut nonces = std::collections::HashSet::new();
        for ((i, send), followed) in ready.into_iter().zip(followed?) {
            if followed {
                continue; // it notifies its followers: alone
            }
            if let Some(nonce) = send.nonce()
                && !nonces.insert((send.channel, send.author, nonce.to_owned()))
            {
                // The nonce of a send before it in this batch: alone, after this
                // transaction, it finds that first message.
                continue;
            }
            let id = service::id_after(newest.get(&send.channel).copied());
            newest.insert(send.channel, id);
            if send.writes_with_others() {
                many.push((i, send, id));
            } else {
                each.push((i, send, id));
            }
        }
        let (places, many): (Vec<usize>, Vec<_>) = many
            .into_iter()
            .map(|(i, send, id)| (i, (send, id)))
            .unzip();
        let (written, alone) =
            futures_util::join!(
                async {
                    if many.is_empty() {
                        Ok(Vec::new())
                    } else {
                        service::write_many(shared, many).await
                    }
                },
                futures_util::future::join_all(each.into_iter().map(async |(i, send, id)| {
                    (i, service::write(shared, send, Some(id)).await)
                })),
            );
        // Events in the order of the batch (of the ids, in each channel).
        let mut events: Vec<(usize, Vec<Outgoing>)> = Vec::new();
        let written = written?;
        if written.len() != places.len() {
            return Err(AppError::internal(anyhow::anyhow!(
                "a batch's writes went unanswered"
            )));
        }
        let written = places.into_iter().zip(written).map(|(i, w)| (i, Ok(w)));
        for (i, written) in written.chain(alone) {
            let (answer, more) = written?;
            events.push((i, more));
            answers[i] = Some(Ok(answer));
        }
        events.sort_unstable_by_key(|(i, _)| *i);
        Ok((answers, events.into_iter().flat_map(|(_, e)| e).collect()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(channel: ChannelId, content: &str) -> Pending {
        Pending {
            author: UserId(uuid::Uuid::nil()),
            channel,
            new: NewMessage {
                content: content.to_owned(),
                reply_to: None,
                nonce: None,
                attachment_ids: Vec::new(),
            },
            answer: oneshot::channel().0,
        }
    }

    fn contents(batch: &[Pending]) -> Vec<&str> {
        batch.iter().map(|p| p.new.content.as_str()).collect()
    }

    #[test]
    fn a_batch_leaves_the_sends_into_channels_another_batch_writes_for_the_next() {
        let (a, b, c) = (
            ChannelId(uuid::Uuid::from_u128(1)),
            ChannelId(uuid::Uuid::from_u128(2)),
            ChannelId(uuid::Uuid::from_u128(3)),
        );
        let mut queue = Queue {
            pending: vec![pending(a, "a1"), pending(b, "b1"), pending(a, "a2")],
            ..Queue::default()
        };
        let first = queue.take();
        assert_eq!(contents(&first), ["a1", "b1", "a2"]);
        assert_eq!(queue.busy.get(&a).map(|(n, _)| *n), Some(2));
        queue.pending = vec![pending(a, "a3"), pending(c, "c1"), pending(b, "b2")];
        let second = queue.take();
        assert_eq!(contents(&second), ["c1"], "a and b are being written");
        assert_eq!(contents(&queue.pending), ["a3", "b2"], "in their order");
        let first_channels: Vec<ChannelId> = first.iter().map(|p| p.channel).collect();
        queue.release(&first_channels);
        assert!(!queue.busy.contains_key(&a) && !queue.busy.contains_key(&b));
        let third = queue.take();
        assert_eq!(contents(&third), ["a3", "b2"]);
        queue.release(&[c, a, b]);
        assert!(queue.busy.is_empty());
    }

    #[test]
    fn a_batch_takes_at_most_max_sends() {
        let a = ChannelId(uuid::Uuid::from_u128(1));
        let mut queue = Queue {
            pending: (0..MAX + 3).map(|i| pending(a, &i.to_string())).collect(),
            ..Queue::default()
        };
        assert_eq!(queue.take().len(), MAX);
        assert_eq!(queue.pending.len(), 3);
        assert!(queue.take().is_empty(), "its channel is busy");
    }

    #[test]
    fn a_channel_busy_for_too_long_holds_back_no_send() {
        let a = ChannelId(uuid::Uuid::from_u128(1));
        let Some(long_ago) =
            std::time::Instant::now().checked_sub(BUSY_AT_MOST + std::time::Duration::from_secs(1))
        else {
            return; // (a machine up for less than that)
        };
        let mut queue = Queue {
            pending: vec![pending(a, "a1")],
            busy: HashMap::from([(a, (1, long_ago))]),
            ..Queue::default()
        };
        assert_eq!(
            contents(&queue.take()),
            ["a1"],
            "its batch hangs: not waited for"
        );
        assert_eq!(queue.busy.get(&a).map(|(n, _)| *n), Some(2));
        queue.release(&[a]);
        queue.release(&[a]);
        assert!(queue.busy.is_empty());
    }
}
