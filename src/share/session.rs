//! Share sessions (KIP-932): per (group, member), the share-partitions a member fetches from
//! this broker and the epoch its next ShareFetch or ShareAcknowledge must carry. Epoch 0 opens
//! a session (replacing one of the same key), -1 closes it, and every other request must carry
//! the session's epoch, which then moves on by one (wrapping to 1).

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

pub const INITIAL_EPOCH: i32 = 0;
pub const FINAL_EPOCH: i32 = -1;

pub type SharePartitionId = (Uuid, i32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// SHARE_SESSION_NOT_FOUND.
    NotFound,
    /// INVALID_SHARE_SESSION_EPOCH.
    InvalidEpoch,
    /// INVALID_REQUEST: acknowledgements in an opening fetch, or partitions in a closing one.
    InvalidRequest,
    /// SHARE_SESSION_LIMIT_REACHED.
    LimitReached,
}

#[derive(Debug, Clone, Default)]
struct Session {
    epoch: i32,
    partitions: BTreeSet<SharePartitionId>,
}

/// What a fetch may do after its session checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchContext {
    /// Fetch from these partitions (the whole session).
    Fetch(Vec<SharePartitionId>),
    /// The session closed: acknowledge, release what the member holds in these, fetch nothing.
    Closed(Vec<SharePartitionId>),
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_key: HashMap<(String, String), Session>,
}

fn next_epoch(e: i32) -> i32 {
    if e == i32::MAX {
        1
    } else {
        e + 1
    }
}

impl Sessions {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// ShareFetch's session step. `adding` are the partitions the request names, `forgetting`
    /// those it drops; `acks` whether it acknowledges anything. `limit` caps open sessions.
    pub fn fetch(
        &mut self,
        (group, member): (&str, &str),
        epoch: i32,
        adding: &[SharePartitionId],
        forgetting: &[SharePartitionId],
        acks: bool,
        limit: usize,
    ) -> Result<FetchContext, SessionError> {
        let key = (group.to_string(), member.to_string());
        match epoch {
            INITIAL_EPOCH => {
                if acks {
                    return Err(SessionError::InvalidRequest);
                }
                if !self.by_key.contains_key(&key) && self.by_key.len() >= limit {
                    return Err(SessionError::LimitReached);
                }
                let s = Session {
                    epoch: 1,
                    partitions: adding.iter().copied().collect(),
                };
                let parts = s.partitions.iter().copied().collect();
                self.by_key.insert(key, s);
                Ok(FetchContext::Fetch(parts))
            }
            FINAL_EPOCH => {
                if !adding.is_empty() {
                    return Err(SessionError::InvalidRequest);
                }
                let s = self.by_key.remove(&key).ok_or(SessionError::NotFound)?;
                Ok(FetchContext::Closed(s.partitions.into_iter().collect()))
            }
            _ => {
                let s = self.by_key.get_mut(&key).ok_or(SessionError::NotFound)?;
                if s.epoch != epoch {
                    return Err(SessionError::InvalidEpoch);
                }
                s.partitions.extend(adding.iter().copied());
                for p in forgetting {
                    s.partitions.remove(p);
                }
                s.epoch = next_epoch(s.epoch);
                Ok(FetchContext::Fetch(s.partitions.iter().copied().collect()))
            }
        }
    }

    /// ShareAcknowledge's session step: Some(partitions) when it closes the session.
    pub fn acknowledge(
        &mut self,
        group: &str,
        member: &str,
        epoch: i32,
    ) -> Result<Option<Vec<SharePartitionId>>, SessionError> {
        let key = (group.to_string(), member.to_string());
        match epoch {
            INITIAL_EPOCH => Err(SessionError::InvalidEpoch),
            FINAL_EPOCH => {
                let s = self.by_key.remove(&key).ok_or(SessionError::NotFound)?;
                Ok(Some(s.partitions.into_iter().collect()))
            }
            _ => {
                let s = self.by_key.get_mut(&key).ok_or(SessionError::NotFound)?;
                if s.epoch != epoch {
                    return Err(SessionError::InvalidEpoch);
                }
                s.epoch = next_epoch(s.epoch);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(i: i32) -> SharePartitionId {
        (Uuid::from_u128(7), i)
    }

    #[test]
    fn epochs_open_move_on_and_close() {
        let mut s = Sessions::default();
        assert_eq!(
            s.fetch(("g", "m"), 1, &[], &[], false, 10),
            Err(SessionError::NotFound)
        );
        assert_eq!(
            s.fetch(("g", "m"), 0, &[p(0)], &[], true, 10),
            Err(SessionError::InvalidRequest),
            "an opening fetch acknowledges nothing"
        );
        assert_eq!(
            s.fetch(("g", "m"), 0, &[p(0)], &[], false, 10),
            Ok(FetchContext::Fetch(vec![p(0)]))
        );
        assert_eq!(
            s.fetch(("g", "m"), 2, &[], &[], false, 10),
            Err(SessionError::InvalidEpoch)
        );
        assert_eq!(
            s.fetch(("g", "m"), 1, &[p(1)], &[], true, 10),
            Ok(FetchContext::Fetch(vec![p(0), p(1)]))
        );
        assert_eq!(s.acknowledge("g", "m", 2), Ok(None));
        assert_eq!(s.acknowledge("g", "m", 0), Err(SessionError::InvalidEpoch));
        assert_eq!(
            s.fetch(("g", "m"), 3, &[], &[p(0)], false, 10),
            Ok(FetchContext::Fetch(vec![p(1)]))
        );
        assert_eq!(
            s.fetch(("g", "m"), -1, &[p(0)], &[], false, 10),
            Err(SessionError::InvalidRequest)
        );
        assert_eq!(
            s.fetch(("g", "m"), -1, &[], &[], true, 10),
            Ok(FetchContext::Closed(vec![p(1)]))
        );
        assert_eq!(s.acknowledge("g", "m", -1), Err(SessionError::NotFound));
        assert!(s.is_empty());
    }

    #[test]
    fn sessions_are_capped_but_a_member_may_reopen_its_own() {
        let mut s = Sessions::default();
        s.fetch(("g", "a"), 0, &[p(0)], &[], false, 1).unwrap();
        assert_eq!(
            s.fetch(("g", "b"), 0, &[p(0)], &[], false, 1),
            Err(SessionError::LimitReached)
        );
        s.fetch(("g", "a"), 0, &[p(1)], &[], false, 1).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(next_epoch(i32::MAX), 1);
    }
}
