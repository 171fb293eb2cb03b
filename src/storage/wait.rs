//! Futures that wait for a log position to be reached, without holding any borrow of the log.
//!
//! A [`WaitList`] keeps (key, waker) pairs; the log calls [`WaitList::wake_upto`] when the
//! watched value advances. A [`Wait`] future re-checks its condition on every poll and removes
//! its entry when dropped, so abandoning one (a fetch timing out) leaves nothing behind.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
pub struct WaitList {
    next_id: Cell<u64>,
    waiters: RefCell<BTreeMap<u64, (i64, Waker)>>,
}

impl WaitList {
    /// Wakes (and forgets) every waiter whose key is at most `value`.
    pub fn wake_upto(&self, value: i64) {
        let ready: Vec<Waker> = {
            let mut w = self.waiters.borrow_mut();
            let ids: Vec<u64> = w
                .iter()
                .filter(|(_, (key, _))| *key <= value)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| w.remove(id))
                .map(|(_, wk)| wk)
                .collect()
        };
        ready.into_iter().for_each(Waker::wake);
    }

    pub fn wake_all(&self) {
        let all = std::mem::take(&mut *self.waiters.borrow_mut());
        all.into_values().for_each(|(_, wk)| wk.wake());
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiters.borrow().len()
    }

    fn register(&self, id: &mut Option<u64>, key: i64, waker: &Waker) {
        let id = *id.get_or_insert_with(|| {
            let n = self.next_id.get();
            self.next_id.set(n + 1);
            n
        });
        self.waiters.borrow_mut().insert(id, (key, waker.clone()));
    }

    fn remove(&self, id: u64) {
        self.waiters.borrow_mut().remove(&id);
    }
}

/// Resolves to `check()`'s value once it has one; waits on `list` under `key` meanwhile.
pub struct Wait<'a, T, F: FnMut() -> Option<T>> {
    list: &'a WaitList,
    key: i64,
    check: F,
    id: Option<u64>,
}

impl<'a, T, F: FnMut() -> Option<T>> Wait<'a, T, F> {
    pub fn new(list: &'a WaitList, key: i64, check: F) -> Self {
        Wait {
            list,
            key,
            check,
            id: None,
        }
    }
}

impl<T, F: FnMut() -> Option<T> + Unpin> Future for Wait<'_, T, F> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        if let Some(v) = (this.check)() {
            if let Some(id) = this.id.take() {
                this.list.remove(id);
            }
            return Poll::Ready(v);
        }
        this.list.register(&mut this.id, this.key, cx.waker());
        Poll::Pending
    }
}

impl<T, F: FnMut() -> Option<T>> Drop for Wait<'_, T, F> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.list.remove(id);
        }
    }
}
