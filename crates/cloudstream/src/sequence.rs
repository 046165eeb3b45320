//! [`Sequence`]: a record's number within its partition, wide enough for every provider.
//!
//! The embedded engine numbers records 0, 1, 2, ... in a `u64`. Kinesis hands out decimal
//! sequence numbers of 56 digits in practice (its API pattern allows up to 129; one longer
//! than 2^256 is refused with a clear error, never truncated), Pub/Sub numeric message ids.
//! One 256-bit unsigned integer holds them, stays `Copy`, and orders as the provider does
//! where the provider orders them (Pub/Sub message ids are identifiers, not an order).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// A record's sequence number within its partition: an unsigned integer of up to 256 bits,
/// printed and parsed in decimal.
///
/// Where sequences are read positions (the engine, Kinesis) they increase strictly within a
/// partition; they need not be contiguous (Kinesis leaves gaps), so the only arithmetic a
/// caller should rely on is comparison.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sequence {
    /// Limbs, most significant first, so the derived comparison of the array is numeric.
    limbs: [u64; 4],
}

impl Sequence {
    /// Zero, the first sequence of the embedded engine.
    pub const ZERO: Sequence = Sequence { limbs: [0; 4] };
    /// The largest sequence.
    pub const MAX: Sequence = Sequence {
        limbs: [u64::MAX; 4],
    };

    /// The sequence as a `u64`, when it fits.
    pub fn as_u64(&self) -> Option<u64> {
        match self.limbs {
            [0, 0, 0, n] => Some(n),
            _ => None,
        }
    }

    /// The sequence as a `u128`, when it fits (Redis stream ids: milliseconds in the high
    /// 64 bits, the sequence within the millisecond in the low 64).
    pub fn as_u128(&self) -> Option<u128> {
        match self.limbs {
            [0, 0, high, low] => Some((u128::from(high) << 64) | u128::from(low)),
            _ => None,
        }
    }

    /// The sequence of a `u128`.
    pub fn from_u128(n: u128) -> Sequence {
        Sequence {
            limbs: [0, 0, (n >> 64) as u64, n as u64],
        }
    }

    /// The sequence of four 64-bit limbs, most significant first (Pulsar message ids:
    /// ledger, entry, batch index).
    #[cfg(feature = "pulsar")]
    pub(crate) fn from_limbs(limbs: [u64; 4]) -> Sequence {
        Sequence { limbs }
    }

    /// The four 64-bit limbs of the sequence, most significant first.
    #[cfg(feature = "pulsar")]
    pub(crate) fn limbs(&self) -> [u64; 4] {
        self.limbs
    }

    /// The next sequence, unless this is [`Sequence::MAX`].
    pub fn checked_next(&self) -> Option<Sequence> {
        let mut limbs = self.limbs;
        for limb in limbs.iter_mut().rev() {
            let (sum, carry) = limb.overflowing_add(1);
            *limb = sum;
            if !carry {
                return Some(Sequence { limbs });
            }
        }
        None
    }

    /// `self * 10 + digit`, or `None` on overflow.
    fn push_digit(self, digit: u8) -> Option<Sequence> {
        let mut carry = u128::from(digit);
        let mut limbs = self.limbs;
        for limb in limbs.iter_mut().rev() {
            let wide = u128::from(*limb) * 10 + carry;
            *limb = wide as u64;
            carry = wide >> 64;
        }
        (carry == 0).then_some(Sequence { limbs })
    }

    /// `(self / 10, self % 10)`.
    fn div_rem_10(self) -> (Sequence, u8) {
        let mut rem = 0u128;
        let mut limbs = self.limbs;
        for limb in limbs.iter_mut() {
            let wide = (rem << 64) | u128::from(*limb);
            *limb = (wide / 10) as u64;
            rem = wide % 10;
        }
        (Sequence { limbs }, rem as u8)
    }
}

impl From<u64> for Sequence {
    fn from(n: u64) -> Self {
        Sequence {
            limbs: [0, 0, 0, n],
        }
    }
}

impl Ord for Sequence {
    fn cmp(&self, other: &Self) -> Ordering {
        self.limbs.cmp(&other.limbs)
    }
}

impl PartialOrd for Sequence {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq<u64> for Sequence {
    fn eq(&self, other: &u64) -> bool {
        self.as_u64() == Some(*other)
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.as_u64() {
            return write!(f, "{n}");
        }
        let mut digits = Vec::with_capacity(78);
        let mut rest = *self;
        while rest != Sequence::ZERO {
            let (q, r) = rest.div_rem_10();
            digits.push(b'0' + r);
            rest = q;
        }
        digits.reverse();
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sequence {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidArgument(format!("{s:?} is not a sequence: {why}"));
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        s.bytes().try_fold(Sequence::ZERO, |acc, b| {
            if !b.is_ascii_digit() {
                return Err(bad("only decimal digits are allowed"));
            }
            acc.push_digit(b - b'0')
                .ok_or_else(|| bad("it is larger than 2^256 - 1"))
        })
    }
}

impl serde::Serialize for Sequence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.as_u64() {
            Some(n) => s.serialize_u64(n),
            None => s.collect_str(self),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Sequence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Sequence;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned integer or a string of decimal digits")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> std::result::Result<Sequence, E> {
                Ok(Sequence::from(n))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Sequence, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinesis_sequences_round_trip_and_order() {
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692540925702759324208523137515618";
        let (sa, sb): (Sequence, Sequence) = (a.parse().expect("valid"), b.parse().expect("valid"));
        assert_eq!(sa.to_string(), a);
        assert_eq!(sb.to_string(), b);
        assert!(sa < sb);
        assert_eq!(sa.as_u64(), None);
        let next = sa.checked_next().expect("valid");
        assert_eq!(
            next.to_string(),
            "49590338271490256608559692538361571095921575989136588899"
        );
    }

    #[test]
    fn small_values_and_limits() {
        assert_eq!(Sequence::from(42).to_string(), "42");
        assert_eq!("0".parse::<Sequence>().expect("valid"), Sequence::ZERO);
        assert_eq!(
            Sequence::from(u64::MAX)
                .checked_next()
                .expect("valid")
                .to_string(),
            "18446744073709551616"
        );
        assert_eq!(Sequence::MAX.checked_next(), None);
        let max = Sequence::MAX.to_string();
        assert_eq!(max.len(), 78);
        assert_eq!(max.parse::<Sequence>().expect("valid"), Sequence::MAX);
        for bad in ["", "-1", "1a", " 1", &format!("{max}0")] {
            assert!(bad.parse::<Sequence>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_uses_numbers_when_they_fit() {
        let small = serde_json::to_string(&Sequence::from(7)).expect("valid");
        assert_eq!(small, "7");
        let big: Sequence = "123456789012345678901234567890".parse().expect("valid");
        let json = serde_json::to_string(&big).expect("valid");
        assert_eq!(json, "\"123456789012345678901234567890\"");
        assert_eq!(serde_json::from_str::<Sequence>(&json).expect("valid"), big);
        assert_eq!(
            serde_json::from_str::<Sequence>("7").expect("valid"),
            Sequence::from(7)
        );
    }
}
