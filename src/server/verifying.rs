//! Order of a producer's batches on a partition while one of them waits for the transaction
//! coordinator (KIP-890 verification).
//!
//! A client may have several produce requests in flight on one connection (librdkafka and the
//! Java client allow five), and the batches of one producer on one partition must be appended
//! in the order they arrived, or their sequences are out of order. The first batch of a
//! transaction on a partition waits for the coordinator; the batches after it that arrive
//! meanwhile queue behind it instead of being appended (or verified) before it. Everything here
//! runs on the partition's owner shard.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};

use crate::shard::Shard;
use crate::types::TopicPartition;

type Key = (TopicPartition, i64);

/// Resolves once the batch holding the matching sender was handled.
type Handled = Shared<oneshot::Receiver<()>>;

/// The last queued batch per (partition, producer id): what the next one waits for.
#[derive(Default)]
pub struct Queues {
    tails: RefCell<HashMap<Key, (u64, Handled)>>,
    next_ticket: std::cell::Cell<u64>,
}

/// A batch's place in its queue: the batch before it to wait for, and the signal the batch
/// after it waits for (sent when this one is appended or refused, or when it is dropped).
pub struct Place {
    queues: Rc<Queues>,
    key: Key,
    ticket: u64,
    behind: Option<Handled>,
    done: Option<oneshot::Sender<()>>,
}

fn queues(shard: &Shard) -> Rc<Queues> {
    shard.service::<Queues>()
}

/// Whether a batch of `producer_id` on `tp` must queue behind one still waiting.
pub fn is_waiting(shard: &Shard, tp: &TopicPartition, producer_id: i64) -> bool {
    producer_id >= 0
        && queues(shard)
            .tails
            .borrow()
            .contains_key(&(tp.clone(), producer_id))
}

/// Takes the next place in the queue of (`tp`, `producer_id`).
pub fn enqueue(shard: &Shard, tp: &TopicPartition, producer_id: i64) -> Place {
    queues(shard).place((tp.clone(), producer_id))
}

impl Queues {
    fn place(self: &Rc<Self>, key: Key) -> Place {
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        let (tx, rx) = oneshot::channel();
        let behind = self
            .tails
            .borrow_mut()
            .insert(key.clone(), (ticket, rx.shared()))
            .map(|(_, rx)| rx);
        Place {
            queues: self.clone(),
            key,
            ticket,
            behind,
            done: Some(tx),
        }
    }
}

impl Place {
    /// Waits until the batch before this one was handled.
    pub async fn turn(&mut self) {
        if let Some(b) = self.behind.take() {
            // A dropped sender (its request went away) lets the queue move on too.
            let _ = b.await;
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
        let mut tails = self.queues.tails.borrow_mut();
        if tails.get(&self.key).is_some_and(|(t, _)| *t == self.ticket) {
            tails.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn q() -> Rc<Queues> {
        Rc::new(Queues::default())
    }

    #[test]
    fn a_later_batch_waits_for_the_one_before_and_the_queue_empties() {
        let queues = q();
        let key = (TopicPartition::new("t", 0), 7);
        let first = queues.place(key.clone());
        let mut second = queues.place(key.clone());
        let mut turn = Box::pin(second.turn());
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(
            turn.as_mut().poll(&mut cx).is_pending(),
            "went before the first"
        );
        drop(first);
        assert!(turn.as_mut().poll(&mut cx).is_ready());
        drop(turn);
        assert!(
            queues.tails.borrow().contains_key(&key),
            "second is the tail"
        );
        drop(second);
        assert!(queues.tails.borrow().is_empty());
    }

    #[test]
    fn other_producers_and_partitions_do_not_wait() {
        let queues = q();
        let _a = queues.place((TopicPartition::new("t", 0), 7));
        let mut b = queues.place((TopicPartition::new("t", 0), 8));
        let mut c = queues.place((TopicPartition::new("t", 1), 7));
        assert!(b.behind.is_none() && c.behind.is_none());
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(Box::pin(b.turn()).as_mut().poll(&mut cx).is_ready());
        assert!(Box::pin(c.turn()).as_mut().poll(&mut cx).is_ready());
    }
}
