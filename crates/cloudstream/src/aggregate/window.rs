//! Windows over event time, in milliseconds since 1970: which windows an event falls in.
//! A window is `[start, end)`.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How events are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Window {
    /// Back-to-back windows of `size_ms`: each event in exactly one (`[k·size, (k+1)·size)`).
    Tumbling {
        /// The length of a window.
        size_ms: u64,
    },
    /// Windows of `size_ms` starting every `hop_ms`: an event is in `size/hop` of them
    /// (rounded up), as a moving average over the last `size` every `hop`.
    Hopping {
        /// The length of a window.
        size_ms: u64,
        /// How far apart windows start.
        hop_ms: u64,
    },
    /// A window per burst of a group's events: it lasts while events come less than
    /// `gap_ms` apart, and ends `gap_ms` after its last event.
    Session {
        /// The silence that ends a session.
        gap_ms: u64,
    },
}

/// Longest window, hop or gap: a year.
pub(crate) const MAX_MS: u64 = 366 * 24 * 3600 * 1000;

impl Window {
    /// Refuses windows that cannot be computed: zero or longer than a year, a hop longer
    /// than the window (events between windows would fall in none), or more than 1,000
    /// windows per event.
    pub fn check(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidArgument(format!("window: {why}")));
        let (length, hop) = match *self {
            Window::Tumbling { size_ms } => (size_ms, size_ms),
            Window::Hopping { size_ms, hop_ms } => (size_ms, hop_ms),
            Window::Session { gap_ms } => (gap_ms, gap_ms),
        };
        if length == 0 || hop == 0 || length > MAX_MS {
            return bad(format!(
                "sizes, hops and gaps are 1 ms to a year, not {length} / {hop} ms"
            ));
        }
        if hop > length {
            return bad(format!(
                "a hop ({hop} ms) longer than its window ({length} ms)"
            ));
        }
        if length.div_ceil(hop) > 1_000 {
            return bad(format!(
                "{} windows per event (size / hop) is more than 1,000",
                length.div_ceil(hop)
            ));
        }
        Ok(())
    }

    /// The start of every fixed window (tumbling or hopping) that holds time `t`, oldest
    /// first; nothing for sessions, which are made by [`super::engine`].
    pub(crate) fn starts(&self, t: i64) -> Vec<i64> {
        let (size, hop) = match *self {
            Window::Tumbling { size_ms } => (size_ms as i64, size_ms as i64),
            Window::Hopping { size_ms, hop_ms } => (size_ms as i64, hop_ms as i64),
            Window::Session { .. } => return Vec::new(),
        };
        // The latest start at or before t, then back while the window still holds t.
        let last = t.div_euclid(hop) * hop;
        let mut starts = Vec::with_capacity((size / hop) as usize + 1);
        let mut start = last;
        while start > t - size {
            starts.push(start);
            start -= hop;
        }
        starts.reverse();
        starts
    }

    /// The end of the fixed window starting at `start`, or of a session whose last event is
    /// at `start`.
    pub(crate) fn end(&self, start: i64) -> i64 {
        match *self {
            Window::Tumbling { size_ms } | Window::Hopping { size_ms, .. } => {
                start + size_ms as i64
            }
            Window::Session { gap_ms } => start + gap_ms as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_hold_their_times() {
        let tumbling = Window::Tumbling { size_ms: 60_000 };
        assert_eq!(tumbling.starts(0), vec![0]);
        assert_eq!(tumbling.starts(59_999), vec![0]);
        assert_eq!(tumbling.starts(60_000), vec![60_000]);
        assert_eq!(tumbling.starts(-1), vec![-60_000]);
        let hopping = Window::Hopping {
            size_ms: 60_000,
            hop_ms: 20_000,
        };
        assert_eq!(hopping.starts(65_000), vec![20_000, 40_000, 60_000]);
        assert_eq!(hopping.starts(60_000), vec![20_000, 40_000, 60_000]);
        assert_eq!(hopping.starts(59_999), vec![0, 20_000, 40_000]);
        let uneven = Window::Hopping {
            size_ms: 50,
            hop_ms: 20,
        };
        for t in -200i64..200 {
            // Every multiple of the hop whose window holds t, found the slow way.
            let expected: Vec<i64> = (-20i64..20)
                .map(|k| k * 20)
                .filter(|s| *s <= t && t < s + 50)
                .collect();
            assert_eq!(uneven.starts(t), expected, "{t}");
        }
    }

    #[test]
    fn impossible_windows_are_refused() {
        assert!(Window::Tumbling { size_ms: 0 }.check().is_err());
        assert!(Window::Hopping {
            size_ms: 10,
            hop_ms: 20
        }
        .check()
        .is_err());
        assert!(Window::Hopping {
            size_ms: 10_000,
            hop_ms: 1
        }
        .check()
        .is_err());
        assert!(Window::Session { gap_ms: 30_000 }.check().is_ok());
    }
}
