//! `GoTime`: a UTC instant with nanosecond precision, encoded exactly as Scope's Go code
//! encodes `time.Time`.
//!
//! - JSON: RFC 3339 with the fraction's trailing zeros trimmed (`2023-06-01T12:00:00.5Z`),
//!   the zero time as `0001-01-01T00:00:00Z`. Any RFC 3339 offset is accepted on input.
//! - msgpack: the 15-byte `MarshalBinary` layout (version 1) inside a raw string; version 2
//!   (16 bytes, sub-minute offsets) is accepted on input.
//!
//! The value is stored as seconds since 0001-01-01T00:00:00Z, Go's own epoch, so the
//! zero value is Go's zero time. Only years 1 to 9999 are representable: Go cannot print
//! other years as RFC 3339 either, and a report carrying one is corrupt.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds from 0001-01-01T00:00:00Z to 1970-01-01T00:00:00Z.
pub const UNIX_TO_GO_EPOCH_SECS: i64 = 62_135_596_800;
/// Seconds from Go's epoch to 10000-01-01T00:00:00Z (one past the last representable second).
const MAX_GO_SECS: i64 = 315_537_897_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoTime {
    /// Seconds since 0001-01-01T00:00:00Z.
    secs: i64,
    nanos: u32,
}

/// Why a timestamp could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("timestamp {0:?} is not RFC 3339")]
    NotRfc3339(String),
    #[error("timestamp is out of range (years 1 to 9999 are supported)")]
    OutOfRange,
    #[error("binary timestamp has {0} bytes, expected 15 (version 1) or 16 (version 2)")]
    BinaryLength(usize),
    #[error("binary timestamp has unsupported version {0}")]
    BinaryVersion(u8),
    #[error("binary timestamp has {0} nanoseconds")]
    BinaryNanos(i32),
}

impl GoTime {
    /// Go's zero time, 0001-01-01T00:00:00Z.
    pub const ZERO: GoTime = GoTime { secs: 0, nanos: 0 };

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// The current time (clamped into the representable range).
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix(
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            since.subsec_nanos(),
        )
        .unwrap_or(Self::ZERO)
    }

    /// From Unix seconds and nanoseconds; `None` outside years 1 to 9999.
    pub fn from_unix(secs: i64, nanos: u32) -> Option<Self> {
        Self::from_go_secs(secs.checked_add(UNIX_TO_GO_EPOCH_SECS)?, nanos)
    }

    /// From Unix nanoseconds; `None` outside years 1 to 9999.
    pub fn from_unix_nanos(nanos: i128) -> Option<Self> {
        let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
        let sub = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
        Self::from_unix(secs, sub)
    }

    fn from_go_secs(secs: i64, nanos: u32) -> Option<Self> {
        if !(0..MAX_GO_SECS).contains(&secs) || nanos >= 1_000_000_000 {
            return None;
        }
        Some(GoTime { secs, nanos })
    }

    pub fn unix_secs(&self) -> i64 {
        self.secs - UNIX_TO_GO_EPOCH_SECS
    }

    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    pub fn unix_nanos(&self) -> i128 {
        i128::from(self.unix_secs()) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// This time plus `nanos` (may be negative), clamped into the representable range.
    pub fn add_nanos(&self, nanos: i64) -> Self {
        let total = self.unix_nanos() + i128::from(nanos);
        Self::from_unix_nanos(total).unwrap_or(if nanos < 0 {
            Self::ZERO
        } else {
            GoTime {
                secs: MAX_GO_SECS - 1,
                nanos: 999_999_999,
            }
        })
    }

    /// Nanoseconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn nanos_since(&self, earlier: GoTime) -> i128 {
        self.unix_nanos() - earlier.unix_nanos()
    }

    /// Go's `MarshalBinary` layout, version 1, always UTC.
    pub fn to_binary(&self) -> [u8; 15] {
        let mut out = [0u8; 15];
        out[0] = 1;
        out[1..9].copy_from_slice(&self.secs.to_be_bytes());
        // nanos < 10^9 always fits an i32
        out[9..13].copy_from_slice(&(self.nanos as i32).to_be_bytes());
        out[13..15].copy_from_slice(&(-1i16).to_be_bytes());
        out
    }

    /// Parses Go's `MarshalBinary` layout (versions 1 and 2). The zone offset names the
    /// zone the time was written in; the seconds are already absolute, so it is ignored.
    pub fn from_binary(bytes: &[u8]) -> Result<Self, TimeError> {
        let version = *bytes.first().ok_or(TimeError::BinaryLength(0))?;
        let expected = match version {
            1 => 15,
            2 => 16,
            v => return Err(TimeError::BinaryVersion(v)),
        };
        if bytes.len() != expected {
            return Err(TimeError::BinaryLength(bytes.len()));
        }
        let mut secs = [0u8; 8];
        secs.copy_from_slice(&bytes[1..9]);
        let mut nanos = [0u8; 4];
        nanos.copy_from_slice(&bytes[9..13]);
        let secs = i64::from_be_bytes(secs);
        let nanos = i32::from_be_bytes(nanos);
        let nanos = u32::try_from(nanos).map_err(|_| TimeError::BinaryNanos(nanos))?;
        if nanos >= 1_000_000_000 {
            return Err(TimeError::BinaryNanos(nanos as i32));
        }
        Self::from_go_secs(secs, nanos).ok_or(TimeError::OutOfRange)
    }

    /// Parses any RFC 3339 timestamp (`Z` or a numeric offset, any number of fraction digits).
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeError> {
        parse_rfc3339(s.as_bytes()).ok_or_else(|| {
            if looks_like_rfc3339_with_wide_year(s) {
                TimeError::OutOfRange
            } else {
                TimeError::NotRfc3339(s.chars().take(64).collect())
            }
        })?
    }

    /// Writes the RFC 3339 form Go's `RFC3339Nano` layout produces (UTC).
    pub fn write_rfc3339(&self, out: &mut String) {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days - UNIX_TO_GO_EPOCH_SECS / 86_400);
        let (hh, mm, ss) = (rem / 3600, (rem / 60) % 60, rem % 60);
        let mut buf = [0u8; 30];
        let mut n = 0;
        let put2 = |v: i64, buf: &mut [u8; 30], n: &mut usize| {
            buf[*n] = b'0' + (v / 10) as u8;
            buf[*n + 1] = b'0' + (v % 10) as u8;
            *n += 2;
        };
        put2(y / 100, &mut buf, &mut n);
        put2(y % 100, &mut buf, &mut n);
        buf[n] = b'-';
        n += 1;
        put2(m, &mut buf, &mut n);
        buf[n] = b'-';
        n += 1;
        put2(d, &mut buf, &mut n);
        buf[n] = b'T';
        n += 1;
        put2(hh, &mut buf, &mut n);
        buf[n] = b':';
        n += 1;
        put2(mm, &mut buf, &mut n);
        buf[n] = b':';
        n += 1;
        put2(ss, &mut buf, &mut n);
        if self.nanos != 0 {
            buf[n] = b'.';
            n += 1;
            let mut digits = [0u8; 9];
            let mut v = self.nanos;
            for slot in digits.iter_mut().rev() {
                *slot = b'0' + (v % 10) as u8;
                v /= 10;
            }
            let mut len = 9;
            while digits[len - 1] == b'0' {
                len -= 1;
            }
            buf[n..n + len].copy_from_slice(&digits[..len]);
            n += len;
        }
        buf[n] = b'Z';
        n += 1;
        // Every byte written above is ASCII.
        out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
    }

    pub fn to_rfc3339(&self) -> String {
        let mut s = String::with_capacity(30);
        self.write_rfc3339(&mut s);
        s
    }
}

impl fmt::Display for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01, proleptic Gregorian.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
}

fn looks_like_rfc3339_with_wide_year(s: &str) -> bool {
    let b = s.as_bytes();
    let digits_len = b
        .iter()
        .skip(usize::from(
            b.first() == Some(&b'-') || b.first() == Some(&b'+'),
        ))
        .take_while(|c| c.is_ascii_digit())
        .count();
    digits_len > 4 || b.first() == Some(&b'-')
}

/// Returns `None` for syntax errors, `Some(Err(OutOfRange))` for valid syntax outside the range.
fn parse_rfc3339(b: &[u8]) -> Option<Result<GoTime, TimeError>> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[10] != b'T' && b[10] != b't' && b[10] != b' ' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(&b[i + 1..i + 3])?;
            let om = digits(&b[i + 4..i + 6])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let unix = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(GoTime::from_unix(unix, nanos).ok_or(TimeError::OutOfRange))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zero_time_prints_as_go_does() {
        assert_eq!(GoTime::ZERO.to_rfc3339(), "0001-01-01T00:00:00Z");
        assert_eq!(
            GoTime::parse_rfc3339("0001-01-01T00:00:00Z"),
            Ok(GoTime::ZERO)
        );
    }

    #[test]
    fn fractions_are_printed_without_trailing_zeros() {
        let t = GoTime::parse_rfc3339("2023-06-01T12:00:00.123456789Z").expect("valid");
        assert_eq!(t.to_rfc3339(), "2023-06-01T12:00:00.123456789Z");
        let t = GoTime::parse_rfc3339("2023-06-01T12:00:00.500Z").expect("valid");
        assert_eq!(t.to_rfc3339(), "2023-06-01T12:00:00.5Z");
        let t = GoTime::parse_rfc3339("2023-06-01T12:00:00.000Z").expect("valid");
        assert_eq!(t.to_rfc3339(), "2023-06-01T12:00:00Z");
    }

    #[test]
    fn numeric_offsets_are_converted_to_utc() {
        let t = GoTime::parse_rfc3339("2023-06-01T14:30:00+02:30").expect("valid");
        assert_eq!(t.to_rfc3339(), "2023-06-01T12:00:00Z");
        let t = GoTime::parse_rfc3339("2023-06-01T00:00:00-01:00").expect("valid");
        assert_eq!(t.to_rfc3339(), "2023-06-01T01:00:00Z");
    }

    #[test]
    fn the_documented_binary_example_round_trips() {
        // protocol.md §1.3
        let bytes = [
            0x01, 0x00, 0x00, 0x00, 0x0e, 0xdc, 0x0a, 0x7f, 0x40, 0x07, 0x5b, 0xcd, 0x15, 0xff,
            0xff,
        ];
        let t = GoTime::from_binary(&bytes).expect("valid");
        assert_eq!(t.to_rfc3339(), "2023-06-01T12:00:00.123456789Z");
        assert_eq!(t.to_binary(), bytes);
    }

    #[test]
    fn binary_version_two_with_an_offset_is_accepted() {
        let mut v2 = [0u8; 16];
        v2[..15].copy_from_slice(&GoTime::from_unix(1_685_620_800, 7).expect("ok").to_binary());
        v2[0] = 2;
        v2[13..15].copy_from_slice(&90i16.to_be_bytes());
        v2[15] = 30;
        let t = GoTime::from_binary(&v2).expect("valid");
        assert_eq!(t.unix_secs(), 1_685_620_800);
        assert_eq!(t.subsec_nanos(), 7);
    }

    #[test]
    fn malformed_timestamps_are_rejected_with_the_reason() {
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-06-01T24:00:00Z",
            "2023-06-01T12:00:60Z",
            "2023-06-01T12:00:00",
            "2023-06-01T12:00:00.Z",
            "2023-06-01T12:00:00+0200",
        ] {
            assert!(
                matches!(GoTime::parse_rfc3339(bad), Err(TimeError::NotRfc3339(_))),
                "{bad:?} should not parse"
            );
        }
        assert_eq!(
            GoTime::parse_rfc3339("0000-12-31T23:00:00Z"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            GoTime::parse_rfc3339("0001-01-01T00:00:00+01:00"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            GoTime::parse_rfc3339("12023-06-01T12:00:00Z"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            GoTime::from_binary(&[1, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            GoTime::from_binary(&[1, 2, 3]),
            Err(TimeError::BinaryLength(3))
        );
        assert_eq!(
            GoTime::from_binary(&[9; 15]),
            Err(TimeError::BinaryVersion(9))
        );
    }

    #[test]
    fn formatting_matches_the_time_crate_across_the_calendar() {
        use ::time::format_description::well_known::Rfc3339;
        // Every 997 days plus an odd number of seconds, from year 1 to 9999.
        let mut unix = -UNIX_TO_GO_EPOCH_SECS;
        while let Some(t) = GoTime::from_unix(
            unix,
            (unix.rem_euclid(1000) * 1_000_007) as u32 % 1_000_000_000,
        ) {
            let reference = ::time::OffsetDateTime::from_unix_timestamp_nanos(t.unix_nanos())
                .expect("in range")
                .format(&Rfc3339)
                .expect("formats");
            assert_eq!(t.to_rfc3339(), reference);
            assert_eq!(GoTime::parse_rfc3339(&reference), Ok(t));
            unix += 997 * 86_400 + 3_607;
        }
    }
}
