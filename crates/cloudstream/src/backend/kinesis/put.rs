//! Which records of a PutRecords call to send again.
//!
//! PutRecords is not atomic: each record succeeds or fails on its own (throttling, an
//! internal failure). Sending only the failed records again would put a failed record after
//! a later record of the same key that succeeded, breaking the key's order. So a record is
//! sent again when it failed, or when it succeeded after a failed record of its key; the
//! earlier copy of the latter stays in the shard as a duplicate (at-least-once), and the
//! receipt returned is the one of the copy that is in order. Records without a key carry no
//! order promise across a retry and go again only if they failed themselves.

use std::collections::HashSet;

/// Indices (into `keys`) to send again, in their original order. `keys[i]` is the key of
/// record `i` (`None` without one); `failed[i]` whether it failed.
pub(super) fn to_resend(keys: &[Option<&str>], failed: &[bool]) -> Vec<usize> {
    let mut broken: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for (i, (&key, &failed)) in keys.iter().zip(failed).enumerate() {
        let after_failure = key.is_some_and(|k| broken.contains(k));
        if failed || after_failure {
            out.push(i);
        }
        if let (true, Some(k)) = (failed, key) {
            broken.insert(k);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_when_they_end_each_key() {
        let keys = [Some("a"), Some("b"), Some("a"), Some("b")];
        assert_eq!(to_resend(&keys, &[false, false, true, true]), [2, 3]);
        assert!(to_resend(&keys, &[false; 4]).is_empty());
    }

    #[test]
    fn later_records_of_a_failed_key_go_again() {
        let keys = [Some("a"), Some("b"), Some("a"), None, Some("b")];
        assert_eq!(
            to_resend(&keys, &[true, false, false, false, false]),
            [0, 2]
        );
        assert_eq!(
            to_resend(&keys, &[false, true, false, true, false]),
            [1, 3, 4]
        );
    }

    #[test]
    fn unkeyed_records_go_again_only_when_they_failed() {
        let keys = [None, None, None];
        assert_eq!(to_resend(&keys, &[true, false, true]), [0, 2]);
    }
}
