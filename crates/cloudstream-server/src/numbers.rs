//! Whole numbers in JSON bodies as JSON Schema counts them: `2.0` is the integer 2, as the
//! OpenAPI document's `integer` allows, so a client that writes integers as floats is not
//! refused for it.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// An optional whole number ≥ 0, written as an integer or as a float without a fraction.
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(f))
            // In range and whole, so exact.
            .map(|f| f as u64)
    });
    whole
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number of 0 or more")))
}

/// [`opt_u64`] within `u32`.
pub(crate) fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    opt_u64(d)?
        .map(|n| u32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is too large"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::opt_u32")]
        n: Option<u32>,
    }

    #[test]
    fn whole_floats_are_integers_and_the_rest_is_refused() {
        let parse = |text: &str| serde_json::from_str::<Body>(text).map(|b| b.n);
        assert_eq!(parse(r#"{"n": 2}"#).ok(), Some(Some(2)));
        assert_eq!(parse(r#"{"n": 2.0}"#).ok(), Some(Some(2)));
        assert_eq!(parse(r#"{"n": null}"#).ok(), Some(None));
        assert_eq!(parse(r#"{}"#).ok(), Some(None));
        for bad in [
            r#"{"n": 2.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": "2"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
