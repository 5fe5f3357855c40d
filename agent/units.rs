//! Kubernetes-style byte quantities ("16Gi", "1Ti", "500M") for scenario and config files.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written as a Kubernetes quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Bytes(pub u64);

const SUFFIXES: [(&str, u64); 10] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
];

impl FromStr for Bytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (number, factor) =
            SUFFIXES.iter().find_map(|(suffix, f)| s.strip_suffix(suffix).map(|n| (n, *f))).unwrap_or((s, 1));
        let value: f64 = number.trim().parse().map_err(|_| format!("{s:?} is not a quantity like 16Gi or 500M"))?;
        if !value.is_finite() || value < 0.0 {
            return Err(format!("{s:?} must be a non-negative quantity"));
        }
        // Quantities in files are far below 2^53 bytes, where f64 is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let bytes = (value * factor as f64).round() as u64;
        Ok(Bytes(bytes))
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suffix, factor) in SUFFIXES[..5].iter().rev() {
            if self.0 >= *factor && self.0 % factor == 0 {
                return write!(f, "{}{suffix}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Bytes(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case("16Gi", 16 << 30)]
    #[case("1Ti", 1 << 40)]
    #[case("500M", 500_000_000)]
    #[case("1.5Ki", 1536)]
    #[case("42", 42)]
    fn parses(#[case] text: &str, #[case] bytes: u64) {
        assert_eq!(text.parse::<Bytes>().unwrap(), Bytes(bytes));
    }

    #[test]
    fn refuses_nonsense_and_formats_back() {
        assert!("lots".parse::<Bytes>().unwrap_err().contains("lots"));
        assert!("-1Gi".parse::<Bytes>().is_err());
        assert_eq!(Bytes(16 << 30).to_string(), "16Gi");
        assert_eq!(Bytes(1000).to_string(), "1000");
    }
}
