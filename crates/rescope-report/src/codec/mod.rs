//! Wire codecs: JSON and msgpack, each optionally gzip-compressed, compatible with Scope
//! in both directions (protocol.md §1).
//!
//! Decoding detects the format from the content (gzip magic, then `{` for JSON or a
//! msgpack map header), bounds the decompressed size, and reports malformed input with
//! the path of the offending field.

mod decode;
pub(crate) mod encode;

use std::fmt;
use std::io::Read;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::Deserialize;

use crate::report::Report;
use crate::str::InternScope;

pub use decode::MAX_CHILD_DEPTH;

/// A report serialisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Msgpack,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Msgpack => "msgpack",
        })
    }
}

/// A format plus whether it is gzip-compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encoding {
    pub format: Format,
    pub gzip: bool,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.gzip {
            write!(f, "gzip-compressed {}", self.format)
        } else {
            write!(f, "{}", self.format)
        }
    }
}

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted report after decompression, in bytes.
    pub max_decompressed: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_decompressed: 512 << 20,
        }
    }
}

/// Why a report could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("input is empty")]
    Empty,
    #[error("gzip stream is corrupt or truncated: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("report is larger than the limit of {limit} bytes once decompressed")]
    TooLarge { limit: usize },
    #[error("not a report: expected a JSON object or a msgpack map, found {found}")]
    UnknownFormat { found: String },
    #[error("invalid {format} at {path}: {message}")]
    Invalid {
        format: Format,
        /// Where in the document, e.g. `Process.nodes.host1;42.latest.pid.timestamp`
        /// (`.` is the whole document).
        path: String,
        message: String,
    },
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Detects the encoding of `bytes` from their content.
pub fn detect(bytes: &[u8]) -> Result<Encoding, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.starts_with(&GZIP_MAGIC) {
        return Ok(Encoding {
            format: Format::Json, // refined after decompression
            gzip: true,
        });
    }
    detect_plain(bytes).map(|format| Encoding {
        format,
        gzip: false,
    })
}

fn detect_plain(bytes: &[u8]) -> Result<Format, DecodeError> {
    let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(Format::Json),
        Some(0x80..=0x8f | 0xde | 0xdf) => Ok(Format::Msgpack),
        Some(other) => Err(DecodeError::UnknownFormat {
            found: describe_byte(*other),
        }),
        None => Err(DecodeError::Empty),
    }
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("{:?} (byte 0x{b:02x})", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Decompresses gzip (one or more members), failing once the output exceeds `limit`.
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit).min(64 << 20));
    let read = MultiGzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(DecodeError::Gzip)?;
    if read > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

/// gzip-compresses `bytes` at the default level, as Scope does.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    gzip_level(bytes, Compression::default())
}

/// gzip-compresses `bytes` at the fastest level: a load generator's choice, which
/// leaves more of the machine to the app it measures (the receiver's cost hardly
/// depends on the level).
pub fn gzip_fast(bytes: &[u8]) -> Vec<u8> {
    gzip_level(bytes, Compression::fast())
}

fn gzip_level(bytes: &[u8], level: Compression) -> Vec<u8> {
    use std::io::Write;
    let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 4 + 64), level);
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Decodes a report in any supported encoding, detected from the content.
pub fn decode(bytes: &[u8]) -> Result<Report, DecodeError> {
    decode_with(bytes, DecodeLimits::default()).map(|(r, _)| r)
}

/// Decodes a report and says which encoding it was in.
pub fn decode_with(bytes: &[u8], limits: DecodeLimits) -> Result<(Report, Encoding), DecodeError> {
    let encoding = detect(bytes)?;
    if encoding.gzip {
        let plain = gunzip(bytes, limits.max_decompressed)?;
        let format = detect_plain(&plain)?;
        let report = decode_plain(&plain, format)?;
        Ok((report, Encoding { format, gzip: true }))
    } else {
        if bytes.len() > limits.max_decompressed {
            return Err(DecodeError::TooLarge {
                limit: limits.max_decompressed,
            });
        }
        Ok((decode_plain(bytes, encoding.format)?, encoding))
    }
}

/// How deeply msgpack values may nest (a report needs a few dozen levels; the bound
/// protects the stack from hostile input).
const MAX_MSGPACK_DEPTH: usize = 256;

/// Decodes an uncompressed document of a known format.
pub fn decode_plain(bytes: &[u8], format: Format) -> Result<Report, DecodeError> {
    decode_value(bytes, format)
}

/// Decodes any model type (a report, a node, a plugin spec list) from uncompressed bytes.
pub fn decode_value<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    format: Format,
) -> Result<T, DecodeError> {
    let _intern = InternScope::enter();
    let fast = match format {
        Format::Json => serde_json::from_slice::<T>(bytes).map_err(|e| e.to_string()),
        Format::Msgpack => msgpack_from_slice::<T>(bytes, false),
    };
    match fast {
        Ok(v) => Ok(v),
        // Errors are rare: decode again, tracking the path, to say where it went wrong.
        Err(first) => Err(locate_error::<T>(bytes, format, first)),
    }
}

fn msgpack_from_slice<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    track: bool,
) -> Result<T, String> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(MAX_MSGPACK_DEPTH);
    let value = if track {
        serde_path_to_error::deserialize(&mut de).map_err(|e| e.to_string())?
    } else {
        T::deserialize(&mut de).map_err(|e| e.to_string())?
    };
    trailing_msgpack(bytes)
        .map_err(|rest| format!("{rest} bytes of trailing data after the report"))?;
    Ok(value)
}

/// `Err(n)` if `n` bytes follow the first msgpack value in `bytes`.
fn trailing_msgpack(bytes: &[u8]) -> Result<(), usize> {
    match msgpack_value_len(bytes) {
        Some(len) if len < bytes.len() => Err(bytes.len() - len),
        _ => Ok(()),
    }
}

/// The length in bytes of the first msgpack value, without recursion; `None` if the
/// value is truncated or uses a reserved marker.
fn msgpack_value_len(bytes: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    // Values still to be read at each open level.
    let mut pending: u64 = 1;
    let be = |at: usize, n: usize| -> Option<u64> {
        let slice = bytes.get(at..at.checked_add(n)?)?;
        Some(slice.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    while pending > 0 {
        let marker = *bytes.get(pos)?;
        pending -= 1;
        pos += 1;
        let (skip, children): (u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, u64::from(marker & 0x0f) * 2),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (1 + be(pos, 1)?, 0),
            0xc5 | 0xda => (2 + be(pos, 2)?, 0),
            0xc6 | 0xdb => (4 + be(pos, 4)?, 0),
            0xc7 => (2 + be(pos, 1)?, 0),
            0xc8 => (3 + be(pos, 2)?, 0),
            0xc9 => (5 + be(pos, 4)?, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (2, be(pos, 2)?),
            0xdd => (4, be(pos, 4)?),
            0xde => (2, be(pos, 2)? * 2),
            0xdf => (4, be(pos, 4)? * 2),
            0xc1 => return None,
        };
        pos = pos.checked_add(usize::try_from(skip).ok()?)?;
        if pos > bytes.len() {
            return None;
        }
        pending = pending.checked_add(children)?;
    }
    Some(pos)
}

fn locate_error<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    format: Format,
    fallback: String,
) -> DecodeError {
    let tracked: Result<T, (String, String)> = match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Ok(v) => de
                    .end()
                    .map(|()| v)
                    .map_err(|e| (".".to_string(), e.to_string())),
                Err(e) => Err((e.path().to_string(), e.inner().to_string())),
            }
        }
        Format::Msgpack => {
            let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
            de.set_max_depth(MAX_MSGPACK_DEPTH);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Ok(v) => trailing_msgpack(bytes).map(|()| v).map_err(|rest| {
                    (
                        ".".to_string(),
                        format!("{rest} bytes of trailing data after the report"),
                    )
                }),
                Err(e) => Err((e.path().to_string(), e.inner().to_string())),
            }
        }
    };
    let (path, message) = match tracked {
        Err(found) => found,
        Ok(_) => (".".to_string(), fallback),
    };
    let message = clarify(message);
    DecodeError::Invalid {
        format,
        path,
        message,
    }
}

/// The `Plugins` list of an encoded report exactly as sent (in order, duplicates
/// kept), which the plugin rules count; [`decode`] merges specs by ID.
pub fn plugin_specs_as_sent(
    bytes: &[u8],
    limits: DecodeLimits,
) -> Result<Vec<crate::plugin::PluginSpec>, DecodeError> {
    let encoding = detect(bytes)?;
    let plain;
    let (body, format) = if encoding.gzip {
        plain = gunzip(bytes, limits.max_decompressed)?;
        let format = detect_plain(&plain)?;
        (&plain[..], format)
    } else {
        (bytes, encoding.format)
    };
    decode_value::<decode::PluginsAsSent>(body, format).map(|p| p.plugins)
}

/// Rewords the msgpack decoder's messages that do not say what happened.
fn clarify(message: String) -> String {
    if message.contains("failed to fill whole buffer") {
        "unexpected end of input: the document is truncated, or a length header claims more data than there is".to_string()
    } else if message.contains("invalid utf8") || message.contains("invalid utf-8") {
        format!("string is not valid UTF-8 ({message})")
    } else {
        message
    }
}

/// Encodes a report.
pub fn encode(report: &Report, encoding: Encoding) -> Vec<u8> {
    let plain = match encoding.format {
        Format::Json => to_json(report).into_bytes(),
        Format::Msgpack => to_msgpack(report),
    };
    if encoding.gzip { gzip(&plain) } else { plain }
}

/// Compact JSON, as Scope's app serves `/api/report`.
pub fn to_json(report: &Report) -> String {
    let mut e = encode::Json::new(false);
    encode::report(&mut e, report);
    e.out
}

/// Indented JSON for people.
pub fn to_json_pretty(report: &Report) -> String {
    let mut e = encode::Json::new(true);
    encode::report(&mut e, report);
    e.out
}

/// msgpack exactly as Scope's probe writes it (before gzip).
pub fn to_msgpack(report: &Report) -> Vec<u8> {
    let mut e = encode::Msgpack::default();
    encode::report(&mut e, report);
    e.out
}

/// The msgpack bytes of a single topology (used by golden tests of wire fragments).
pub fn topology_to_msgpack(topology: &crate::topology::Topology) -> Vec<u8> {
    let mut e = encode::Msgpack::default();
    encode::topology(&mut e, topology);
    e.out
}

/// A node as JSON, for tools and error messages.
pub fn node_to_json(node: &crate::node::Node) -> String {
    let mut e = encode::Json::new(false);
    encode::node(&mut e, node);
    e.out
}
