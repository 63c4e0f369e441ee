//! Kubernetes timestamps (`metav1.Time` / `metav1.MicroTime`) without a date-time dependency.
//!
//! Objects carry timestamps as RFC 3339 strings in UTC: `2024-05-01T12:00:00Z`, or with six
//! fractional digits (`2024-05-01T12:00:00.123456Z`) when the instant has sub-second precision,
//! which is how Kubernetes writes `MicroTime` fields such as a Lease's `renewTime`.
//! The crate is pure, so it never reads the clock: callers convert a [`std::time::SystemTime`]
//! (or anything else) with [`Timestamp::from_system_time`] / [`Timestamp::from_unix`].

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A timestamp could not be parsed as RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: {reason} (expected RFC 3339, e.g. 2024-05-01T12:00:00Z)")]
pub struct TimestampError {
    /// The text that was rejected.
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// An instant in UTC with microsecond precision, serialized as an RFC 3339 string.
///
/// ```
/// use stead_api::Timestamp;
/// let t: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
/// assert_eq!(t.unix_seconds(), 1_714_564_800);
/// assert_eq!(Timestamp::from_unix(1_714_564_800, 250_000_000).to_string(),
///            "2024-05-01T12:00:00.250000Z");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    seconds: i64,
    /// Always below 1_000_000: stored in microseconds, like `MicroTime`.
    micros: u32,
}

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp {
        seconds: 0,
        micros: 0,
    };

    /// An instant from seconds and nanoseconds since the Unix epoch (nanoseconds are truncated to
    /// microseconds; values of a second or more carry into the seconds).
    pub fn from_unix(seconds: i64, nanos: u32) -> Self {
        let carry = i64::from(nanos / 1_000_000_000);
        Timestamp {
            seconds: seconds.saturating_add(carry),
            micros: (nanos % 1_000_000_000) / 1_000,
        }
    }

    /// Converts a wall-clock reading; instants before 1970 are supported.
    pub fn from_system_time(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Self::from_duration_since_epoch(after),
            Err(before) => {
                let d = before.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                let micros = d.subsec_micros();
                if micros == 0 {
                    Timestamp {
                        seconds: -secs,
                        micros: 0,
                    }
                } else {
                    Timestamp {
                        seconds: -secs - 1,
                        micros: 1_000_000 - micros,
                    }
                }
            }
        }
    }

    fn from_duration_since_epoch(d: Duration) -> Self {
        Timestamp {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            micros: d.subsec_micros(),
        }
    }

    /// Whole seconds since the Unix epoch (floor).
    pub fn unix_seconds(&self) -> i64 {
        self.seconds
    }

    /// The sub-second part, in microseconds.
    pub fn subsec_micros(&self) -> u32 {
        self.micros
    }

    /// This instant truncated to whole seconds, as `metav1.Time` stores it.
    pub fn truncated_to_seconds(&self) -> Self {
        Timestamp {
            seconds: self.seconds,
            micros: 0,
        }
    }

    /// This instant moved by a number of seconds (saturating).
    pub fn plus_seconds(&self, seconds: i64) -> Self {
        Timestamp {
            seconds: self.seconds.saturating_add(seconds),
            micros: self.micros,
        }
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are bounded by construction (1..=31 and 1..=12).
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.seconds.div_euclid(86_400);
        let secs_of_day = self.seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let (h, m, s) = (
            secs_of_day / 3600,
            (secs_of_day % 3600) / 60,
            secs_of_day % 60,
        );
        write!(f, "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}")?;
        if self.micros != 0 {
            write!(f, ".{:06}", self.micros)?;
        }
        f.write_str("Z")
    }
}

/// A cursor over the ASCII digits and separators of an RFC 3339 string.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let slice = self.bytes.get(self.pos..self.pos + n)?;
        let mut value = 0u32;
        for b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.pos += n;
        Some(value)
    }

    fn eat(&mut self, accepted: &[u8]) -> Option<()> {
        let b = self.bytes.get(self.pos)?;
        accepted.contains(b).then(|| self.pos += 1)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| TimestampError {
            input: input.to_owned(),
            reason,
        };
        let mut c = Cursor {
            bytes: input.as_bytes(),
            pos: 0,
        };
        let malformed = || err("malformed date or time");
        let year = c.digits(4).ok_or_else(malformed)?;
        c.eat(b"-").ok_or_else(malformed)?;
        let month = c.digits(2).ok_or_else(malformed)?;
        c.eat(b"-").ok_or_else(malformed)?;
        let day = c.digits(2).ok_or_else(malformed)?;
        c.eat(b"Tt ").ok_or_else(malformed)?;
        let hour = c.digits(2).ok_or_else(malformed)?;
        c.eat(b":").ok_or_else(malformed)?;
        let minute = c.digits(2).ok_or_else(malformed)?;
        c.eat(b":").ok_or_else(malformed)?;
        let second = c.digits(2).ok_or_else(malformed)?;
        let year = i64::from(year);
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(err("day or month out of range"));
        }
        // A leap second (60) is clamped to 59, as Go's time package does when parsing.
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err("hour, minute or second out of range"));
        }
        let mut micros = 0u32;
        if c.peek() == Some(b'.') {
            c.pos += 1;
            let mut n = 0;
            while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
                if n < 6 {
                    micros = micros * 10 + u32::from(d - b'0');
                }
                n += 1;
                c.pos += 1;
            }
            if n == 0 {
                return Err(err("empty fractional seconds"));
            }
            for _ in n..6 {
                micros *= 10;
            }
        }
        let offset = match c.peek() {
            Some(b'Z' | b'z') => {
                c.pos += 1;
                0
            }
            Some(sign @ (b'+' | b'-')) => {
                c.pos += 1;
                let oh = c.digits(2).ok_or_else(|| err("malformed offset"))?;
                c.eat(b":").ok_or_else(|| err("malformed offset"))?;
                let om = c.digits(2).ok_or_else(|| err("malformed offset"))?;
                if oh > 23 || om > 59 {
                    return Err(err("offset out of range"));
                }
                let total = i64::from(oh * 3600 + om * 60);
                if sign == b'-' { -total } else { total }
            }
            _ => return Err(err("missing time zone (Z or +hh:mm)")),
        };
        if c.pos != c.bytes.len() {
            return Err(err("trailing characters"));
        }
        let seconds = days_from_civil(year, month, day) * 86_400
            + i64::from(hour) * 3600
            + i64::from(minute) * 60
            + i64::from(second.min(59))
            - offset;
        Ok(Timestamp { seconds, micros })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date-time" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants_format_and_parse_as_rfc3339() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00Z"),
            (1_714_564_800, 0, "2024-05-01T12:00:00Z"),
            (951_782_400, 0, "2000-02-29T00:00:00Z"),
            (-1, 0, "1969-12-31T23:59:59Z"),
            (1_714_564_800, 123_456_789, "2024-05-01T12:00:00.123456Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59Z"),
        ];
        for (secs, nanos, text) in cases {
            let t = Timestamp::from_unix(secs, nanos);
            assert_eq!(t.to_string(), text, "formatting {secs}");
            assert_eq!(text.parse::<Timestamp>(), Ok(t), "parsing {text}");
        }
    }

    #[test]
    fn offsets_and_fractions_are_normalised_to_utc_microseconds() {
        let cases = [
            ("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00Z"),
            ("2024-05-01T07:30:00-04:30", "2024-05-01T12:00:00Z"),
            ("2024-05-01t12:00:00.5z", "2024-05-01T12:00:00.500000Z"),
            (
                "2024-05-01T12:00:00.123456789Z",
                "2024-05-01T12:00:00.123456Z",
            ),
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59Z"),
        ];
        for (input, want) in cases {
            let parsed: Timestamp = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.to_string(), want, "{input}");
        }
    }

    #[test]
    fn malformed_timestamps_are_rejected_with_a_reason() {
        let cases = [
            ("", "malformed date or time"),
            ("2024-05-01", "malformed date or time"),
            ("2024-13-01T00:00:00Z", "day or month out of range"),
            ("2023-02-29T00:00:00Z", "day or month out of range"),
            (
                "2024-05-01T24:00:00Z",
                "hour, minute or second out of range",
            ),
            ("2024-05-01T12:00:00", "missing time zone (Z or +hh:mm)"),
            ("2024-05-01T12:00:00.Z", "empty fractional seconds"),
            ("2024-05-01T12:00:00Zjunk", "trailing characters"),
            ("2024-05-01T12:00:00+2:00", "malformed offset"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<Timestamp>().expect_err(input);
            assert_eq!(err.reason, reason, "{input}");
        }
    }

    #[test]
    fn system_times_before_and_after_the_epoch_convert_exactly() {
        let after = UNIX_EPOCH + Duration::new(10, 1_500);
        assert_eq!(
            Timestamp::from_system_time(after),
            Timestamp::from_unix(10, 1_000)
        );
        let before = UNIX_EPOCH - Duration::new(1, 250_000_000);
        assert_eq!(
            Timestamp::from_system_time(before).to_string(),
            "1969-12-31T23:59:58.750000Z"
        );
    }

    #[test]
    fn timestamps_serialize_as_json_strings() {
        let t = Timestamp::from_unix(1_714_564_800, 0);
        let json = serde_json::to_string(&t).unwrap_or_default();
        assert_eq!(json, "\"2024-05-01T12:00:00Z\"");
        let back: Timestamp = serde_json::from_str(&json).unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(back, t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_gives_back_the_same_instant(
            secs in -62_135_596_800i64..253_402_300_799, micros in 0u32..1_000_000
        ) {
            let t = Timestamp::from_unix(secs, micros * 1000);
            prop_assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t));
        }
    }
}
