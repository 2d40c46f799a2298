//! The write fence on etcd, and the compares of every conditional write.
//!
//! The guard key is `<prefix>/shardgate/write_fence` (e.g.
//! `/apisix/shardgate/write_fence`). Its `mod_revision` is the fence:
//! [`Store::fence`](shardgate_store::Store::fence) reads it (0 while the
//! key does not exist). A fenced write is one transaction:
//! - compares: the key's [`Condition`], and `mod_revision(guard) == fence`
//!   (etcd compares an absent key's `mod_revision` as 0);
//! - success: the put or delete, and a put of the guard key (a short text
//!   naming the writer's process and the key it wrote, never the value), so
//!   the guard's `mod_revision` becomes this write's revision;
//! - failure: a range of the key and a range of the guard, so the caller
//!   learns which compare failed without a second round trip: when the
//!   key's own condition does not hold, [`StoreError::ConditionFailed`]
//!   wins (the resource itself changed: a conflict, not a retry);
//!   otherwise the fence moved: [`StoreError::Fenced`].
//!
//! Writes made without a fence do not touch the guard, so they never trip
//! one. APISIX ignores keys under its prefix that are not one of its
//! resource types (`apisix/core/config_etcd.lua` loads each resource
//! directory on its own), and so does shardgate's reconciler.

use etcd_client::{Compare, CompareOp, GetOptions, TxnOp};
use shardgate_store::{Condition, KeyValue, StoreError};

/// The compares that make a write conditional on `cond`.
pub(crate) fn compares(key: &str, cond: Condition) -> Vec<Compare> {
    match cond {
        Condition::Always => Vec::new(),
        Condition::Absent => vec![Compare::create_revision(key, CompareOp::Equal, 0)],
        // `version > 0` keeps `ModRevision(0)` from matching an absent key,
        // whose mod_revision etcd compares as 0: as in the embedded store,
        // ModRevision only ever holds for a key that exists.
        Condition::ModRevision(r) => vec![
            Compare::version(key, CompareOp::Greater, 0),
            Compare::mod_revision(key, CompareOp::Equal, i64::try_from(r).unwrap_or(i64::MAX)),
        ],
    }
}

/// The compare of a fenced write: the guard key is still at `fence`.
pub(crate) fn guard_compare(guard: &str, fence: u64) -> Compare {
    Compare::mod_revision(guard, CompareOp::Equal, i64::try_from(fence).unwrap_or(i64::MAX))
}

/// The guard write of a fenced transaction: who wrote, and which key.
pub(crate) fn guard_put(guard: &str, key: &str) -> TxnOp {
    let value = format!("shardgate pid {} wrote {key}", std::process::id());
    TxnOp::put(guard, value, None)
}

/// The read of the guard key in a failed fenced transaction.
pub(crate) fn guard_get(guard: &str) -> TxnOp {
    TxnOp::get(guard, Some(GetOptions::new().with_keys_only()))
}

/// Whether `cond` holds for `current`; the error says what was found, in
/// the embedded store's words.
pub(crate) fn check(key: &str, cond: Condition, current: Option<&KeyValue>) -> Result<(), StoreError> {
    let failed = |actual: String| Err(StoreError::ConditionFailed { key: key.to_owned(), actual });
    match (cond, current) {
        (Condition::Always, _) | (Condition::Absent, None) => Ok(()),
        (Condition::Absent, Some(kv)) => failed(format!("exists (mod_revision {})", kv.mod_revision)),
        (Condition::ModRevision(r), Some(kv)) if kv.mod_revision == r => Ok(()),
        (Condition::ModRevision(_), Some(kv)) => failed(format!("is at mod_revision {}", kv.mod_revision)),
        (Condition::ModRevision(_), None) => failed("does not exist".into()),
    }
}

/// Why a transaction's compares failed, from what its failure branch read:
/// the key's condition first, then the fence.
pub(crate) fn explain(key: &str, cond: Condition, current: Option<&KeyValue>, fenced: bool) -> StoreError {
    match check(key, cond, current) {
        Err(e) => e,
        Ok(()) if fenced => StoreError::Fenced,
        // The compares failed but the key, read in the same transaction,
        // meets the condition: etcd answered something this code does not
        // expect. Say so rather than guess.
        Ok(()) => StoreError::Backend {
            context: format!("etcd conditional write of {key}"),
            reason: "etcd rejected the transaction but the key meets its condition".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(mod_revision: u64) -> KeyValue {
        KeyValue {
            key: "/k".into(),
            value: b"v".to_vec(),
            create_revision: 1,
            mod_revision,
            version: 1,
            expires_at_ms: None,
        }
    }

    #[test]
    fn condition_failure_wins_over_the_fence() {
        let e = explain("/k", Condition::ModRevision(3), Some(&kv(4)), true);
        assert!(matches!(e, StoreError::ConditionFailed { ref actual, .. } if actual == "is at mod_revision 4"), "{e}");
        let e = explain("/k", Condition::Absent, Some(&kv(4)), true);
        assert!(matches!(e, StoreError::ConditionFailed { ref actual, .. } if actual == "exists (mod_revision 4)"));
        let e = explain("/k", Condition::ModRevision(4), None, true);
        assert!(matches!(e, StoreError::ConditionFailed { ref actual, .. } if actual == "does not exist"));
    }

    #[test]
    fn a_holding_condition_means_the_fence_moved() {
        assert!(matches!(explain("/k", Condition::ModRevision(4), Some(&kv(4)), true), StoreError::Fenced));
        assert!(matches!(explain("/k", Condition::Always, None, true), StoreError::Fenced));
        assert!(matches!(explain("/k", Condition::Absent, None, true), StoreError::Fenced));
        assert!(matches!(explain("/k", Condition::Absent, None, false), StoreError::Backend { .. }));
    }

    #[test]
    fn mod_revision_zero_never_matches_an_absent_key() {
        assert!(check("/k", Condition::ModRevision(0), None).is_err());
        assert_eq!(compares("/k", Condition::ModRevision(0)).len(), 2);
        assert!(compares("/k", Condition::Always).is_empty());
    }
}
