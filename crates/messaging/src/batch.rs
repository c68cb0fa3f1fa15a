//! Sends that arrive together are written together: a send that comes while another
//! send of its thread (an HTTP worker) is committing waits, and the sends that waited
//! go in one transaction, their statements pipelined over one connection: one `BEGIN`,
//! one `COMMIT` (one WAL flush) and four round trips for all of them instead of for
//! each. A send that comes while nothing is committing goes at once, alone.
//!
//! Each send is checked on its own (`service::prepare`): a refusal (403, 404, 409) is
//! that send's answer and writes nothing, the others go on. If anything else fails in
//! the shared transaction, it is rolled back and each of its sends runs again on its
//! own, so a send is never lost or refused because of another. Every channel of the
//! batch is locked first, in the outbox's fixed order, so batches on different
//! connections never deadlock; within a channel, ids still increase in commit order.
//! Sends with files go alone: attaching them can refuse after the row is written.

use std::cell::RefCell;
use std::collections::HashMap;

use diesel_async::AsyncPgConnection;
use synctalk_db::Pool;
use synctalk_gateway::{Outgoing, Topic, event};
use synctalk_kernel::{AppError, AppResult, ChannelId, MessageId, UserId};
use tokio::sync::oneshot;

use crate::dto::Message;
use crate::service::{self, NewMessage, Prepared};

/// The most sends one transaction takes.
const MAX: usize = 64;

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
    /// A task of this thread is writing batches.
    driving: bool,
}

thread_local! {
    static QUEUE: RefCell<Queue> = RefCell::new(Queue::default());
}

/// Sends a message as [`service::send`] does, in a transaction shared with the sends
/// of this thread that wait for one. Call it on an actix-web worker (or any thread
/// with a local task set).
pub async fn send(
    pool: &Pool,
    author: UserId,
    channel: ChannelId,
    new: NewMessage,
) -> AppResult<(Message, bool)> {
    if !new.attachment_ids.is_empty() {
        let mut conn = synctalk_db::conn(pool).await?;
        return service::send(&mut conn, author, channel, new).await;
    }
    let (answer, answered) = oneshot::channel();
    let start = QUEUE.with_borrow_mut(|queue| {
        queue.pending.push(Pending {
            author,
            channel,
            new,
            answer,
        });
        !std::mem::replace(&mut queue.driving, true)
    });
    if start {
        actix_web::rt::spawn(drive(pool.clone()));
    }
    answered.await.unwrap_or_else(|_| {
        Err(AppError::internal(anyhow::anyhow!(
            "a batch of sends stopped before answering"
        )))
    })
}

/// Marks the thread's queue undriven when its driver ends, however it ends.
struct Driving;

impl Drop for Driving {
    fn drop(&mut self) {
        QUEUE.with_borrow_mut(|queue| queue.driving = false);
    }
}

/// Writes the waiting sends, a batch at a time, until none wait.
async fn drive(pool: Pool) {
    let _driving = Driving;
    loop {
        // Sends already under way on this thread join this batch.
        tokio::task::yield_now().await;
        let batch: Vec<Pending> = QUEUE.with_borrow_mut(|queue| {
            let n = queue.pending.len().min(MAX);
            queue.pending.drain(..n).collect()
        });
        if batch.is_empty() {
            return;
        }
        run(&pool, batch).await;
    }
}

async fn run(pool: &Pool, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        if let Some(one) = batch.pop() {
            let answer = alone(pool, one.author, one.channel, one.new).await;
            let _ = one.answer.send(answer);
        }
        return;
    }
    metrics::counter!("message_sends_batched_total").increment(batch.len() as u64);
    let items: Vec<(UserId, ChannelId, NewMessage)> = batch
        .iter()
        .map(|p| (p.author, p.channel, p.new.clone()))
        .collect();
    let outcome = match synctalk_db::conn(pool).await {
        Ok(mut conn) => match together(&mut conn, items).await {
            Ok(answers) => Ok(answers),
            // Its COMMIT went out unanswered: it may stand, so nothing runs again (a
            // send without a nonce would be made twice); each answers 503, as a send
            // alone would, and a client retries with its nonce.
            Err(error) if synctalk_db::outcome_unknown(&mut conn) => Err(Some(error)),
            Err(_) => Err(None),
        },
        Err(_) => Err(None),
    };
    match outcome {
        Ok(answers) => {
            for (pending, answer) in batch.into_iter().zip(answers) {
                let _ = pending.answer.send(answer);
            }
        }
        Err(Some(error)) => {
            tracing::warn!(%error, sends = batch.len(), "a batch of sends ended unanswered");
            for pending in batch {
                let _ = pending.answer.send(Err(AppError::unavailable(
                    "the database did not answer; retry with the same nonce",
                    1000,
                )));
            }
        }
        Err(None) => {
            // Rolled back (or never begun): each on its own, none refused because of
            // another.
            metrics::counter!("message_send_batches_failed_total").increment(1);
            for pending in batch {
                let answer = alone(pool, pending.author, pending.channel, pending.new).await;
                let _ = pending.answer.send(answer);
            }
        }
    }
}

async fn alone(pool: &Pool, author: UserId, channel: ChannelId, new: NewMessage) -> Answer {
    let mut conn = synctalk_db::conn(pool).await?;
    service::send(&mut conn, author, channel, new).await
}

/// The sends in one transaction: each one's answer, or an error when the transaction
/// failed (nothing was written).
async fn together(
    conn: &mut AsyncPgConnection,
    items: Vec<(UserId, ChannelId, NewMessage)>,
) -> AppResult<Vec<Answer>> {
    event::transaction(conn, async |shared: &AsyncPgConnection| {
        let channels: Vec<ChannelId> = items.iter().map(|(_, c, _)| *c).collect();
        let topics: Vec<Topic> = channels.iter().map(|c| Topic::Channel(*c)).collect();
        // The locks go out first, right after BEGIN, then the channels' newest ids
        // (read under the locks), then every send's checks: one round trip.
        let (locked, newest, prepared) = futures_util::join!(
            event::lock_topics(shared, &topics),
            service::newest_ids(shared, &channels),
            futures_util::future::join_all(
                items
                    .into_iter()
                    .map(|(author, channel, new)| service::prepare(shared, author, channel, new)),
            ),
        );
        locked?;
        // Ids in the order of the batch, each above the one before in its channel.
        let mut newest: HashMap<ChannelId, MessageId> = newest?.into_iter().collect();
        let mut answers: Vec<Option<Answer>> = Vec::with_capacity(prepared.len());
        let mut ready = Vec::new();
        for (i, prepared) in prepared.into_iter().enumerate() {
            match prepared {
                Ok(Prepared::Retried(message)) => answers.push(Some(Ok((*message, false)))),
                Ok(Prepared::Ready(send)) => {
                    let id = service::id_after(newest.get(&send.channel).copied());
                    newest.insert(send.channel, id);
                    answers.push(None);
                    ready.push((i, *send, id));
                }
                // A refusal answers that send; it wrote nothing.
                Err(refused) if refused.code().status().is_client_error() => {
                    answers.push(Some(Err(refused)));
                }
                Err(failed) => return Err(failed),
            }
        }
        let written =
            futures_util::future::join_all(ready.into_iter().map(|(i, send, id)| async move {
                (i, service::write(shared, send, Some(id)).await)
            }))
            .await;
        let mut events: Vec<Outgoing> = Vec::new();
        for (i, written) in written {
            let (answer, more) = written?;
            events.extend(more);
            answers[i] = Some(Ok(answer));
        }
        let answers = answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| Err(AppError::internal(anyhow::anyhow!("a send unanswered"))))
            })
            .collect();
        Ok((answers, events))
    })
    .await
}
