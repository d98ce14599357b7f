//! Hostile and broken input: every case must give a clear error naming the problem,
//! never a panic, and decoding must not allocate much more than the input's size.

// A counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to the system
// allocator and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rescope_report::codec::{self, DecodeError, DecodeLimits, Format};

struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = CURRENT.try_with(|c| {
            let now = c.get() + layout.size() as isize;
            c.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = CURRENT.try_with(|c| c.set(c.get() - layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak bytes allocated on this thread while running `f`, above what was live before.
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, peak.max(0) as usize)
}

fn invalid(result: Result<rescope_report::Report, DecodeError>) -> (String, String) {
    match result {
        Err(DecodeError::Invalid { path, message, .. }) => (path, message),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn empty_and_unrecognised_input_is_named() {
    assert!(matches!(codec::decode(b""), Err(DecodeError::Empty)));
    assert!(matches!(codec::decode(b"   \n"), Err(DecodeError::Empty)));
    let err = codec::decode(b"<html>").expect_err("not a report");
    assert_eq!(
        err.to_string(),
        "not a report: expected a JSON object or a msgpack map, found '<' (byte 0x3c)"
    );
    assert!(matches!(
        codec::decode(b"[1,2]"),
        Err(DecodeError::UnknownFormat { .. })
    ));
}

#[test]
fn truncated_gzip_is_reported_as_corrupt() {
    let good = codec::gzip(br#"{"Window": 1}"#);
    for cut in [3, good.len() / 2, good.len() - 4] {
        let err = codec::decode(&good[..cut]).expect_err("truncated");
        assert!(matches!(err, DecodeError::Gzip(_)), "cut at {cut}: {err}");
        assert!(
            err.to_string()
                .starts_with("gzip stream is corrupt or truncated")
        );
    }
}

#[test]
fn a_gzip_bomb_stops_at_the_limit_without_inflating() {
    let zeros = vec![b' '; 64 << 20];
    let mut bomb_json = b"{\"ID\": \"x\"}".to_vec();
    bomb_json.extend_from_slice(&zeros);
    let bomb = codec::gzip(&bomb_json);
    drop((zeros, bomb_json));
    assert!(bomb.len() < 200_000, "compresses well: {}", bomb.len());
    let limits = DecodeLimits {
        max_decompressed: 1 << 20,
    };
    let (result, peak) = peak_allocation(|| codec::decode_with(&bomb, limits));
    assert!(matches!(result, Err(DecodeError::TooLarge { limit }) if limit == 1 << 20));
    assert!(peak < 4 << 20, "peak allocation {peak} bytes");
}

#[test]
fn a_msgpack_header_claiming_four_billion_entries_costs_nothing() {
    // A report map claiming 2^32-1 entries, then one real entry and the end of input.
    let mut map32 = vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0xa2, b'I', b'D', 0xa1, b'x'];
    let (result, peak) = peak_allocation(|| codec::decode(&map32));
    let (_, message) = invalid(result);
    assert!(message.starts_with("unexpected end of input"), "{message}");
    assert!(peak < 64 << 10, "peak allocation {peak} bytes");

    // A node map and a string each claiming 4 GiB.
    map32 = vec![0x81, 0xa7];
    map32.extend_from_slice(b"Process");
    map32.extend_from_slice(&[0x81, 0xa5]);
    map32.extend_from_slice(b"nodes");
    map32.extend_from_slice(&[
        0xdf, 0xff, 0xff, 0xff, 0xff, 0xdb, 0xff, 0xff, 0xff, 0xff, b'a',
    ]);
    let (result, peak) = peak_allocation(|| codec::decode(&map32));
    let (path, _) = invalid(result);
    assert!(path.starts_with("Process.nodes"), "{path}");
    assert!(peak < 64 << 10, "peak allocation {peak} bytes");
}

#[test]
fn wrong_types_name_the_field_and_what_was_expected() {
    let (path, message) = invalid(codec::decode(br#"{"Window": "soon"}"#));
    assert_eq!(path, "Window");
    assert!(message.contains("expected an integer"), "{message}");

    let doc =
        br#"{"Process": {"nodes": {"h;1": {"latest": {"pid": {"timestamp": 5, "value": "1"}}}}}}"#;
    let (path, message) = invalid(codec::decode(doc));
    assert_eq!(path, "Process.nodes.h;1.latest.pid.timestamp");
    assert!(message.contains("RFC 3339"), "{message}");

    let doc = br#"{"Host": {"nodes": {"h": {"metrics": {"cpu": {"samples": [{"date": "2020-01-01T00:00:00Z", "value": "high"}]}}}}}}"#;
    let (path, _) = invalid(codec::decode(doc));
    assert_eq!(path, "Host.nodes.h.metrics.cpu.samples[0].value");

    let (path, _) = invalid(codec::decode(br#"{"Plugins": {"id": "x"}}"#));
    assert_eq!(path, "Plugins");
}

#[test]
fn timestamps_out_of_range_are_rejected() {
    let doc = br#"{"TS": "10000-01-01T00:00:00Z"}"#;
    let (path, message) = invalid(codec::decode(doc));
    assert_eq!(path, "TS");
    assert!(message.contains("out of range"), "{message}");
    // Go binary time with seconds past year 9999.
    let mut mp = vec![0x81, 0xa2, b'T', b'S', 0xaf, 0x01];
    mp.extend_from_slice(&i64::MAX.to_be_bytes());
    mp.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff]);
    let (path, message) = invalid(codec::decode(&mp));
    assert_eq!(path, "TS");
    assert!(message.contains("out of range"), "{message}");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 200_000;
    // Deep junk in a field nobody reads is skipped without recursion.
    let nested = |open: u8, close: u8| {
        let mut v = Vec::new();
        v.extend(std::iter::repeat_n(open, depth));
        v.extend(std::iter::repeat_n(close, depth));
        v
    };
    let mut json = b"{\"Unknown\": ".to_vec();
    json.extend(nested(b'[', b']'));
    json.push(b'}');
    assert!(codec::decode(&json).is_ok());
    // In a field that is read, it is an error.
    let mut json = b"{\"Plugins\": [{\"interfaces\": ".to_vec();
    json.extend(nested(b'[', b']'));
    json.extend_from_slice(b"}]}");
    let (path, message) = invalid(codec::decode(&json));
    assert!(path.starts_with("Plugins"), "{path}: {message}");

    let mut mp = vec![0x81, 0xa7];
    mp.extend_from_slice(b"Unknown");
    mp.extend(std::iter::repeat_n(0x91, depth));
    mp.push(0xc0);
    let (_, message) = invalid(codec::decode(&mp));
    assert!(message.contains("depth"), "{message}");

    // Children nested within the generic limits, but deeper than any rendered node.
    let levels = codec::MAX_CHILD_DEPTH + 1;
    let mut doc = String::from(r#"{"Host": {"nodes": {"a": "#);
    for _ in 0..levels {
        doc.push_str(r#"{"id": "c", "children": ["#);
    }
    doc.push_str("{}");
    for _ in 0..levels {
        doc.push_str("]}");
    }
    doc.push_str("}}}");
    let (_, message) = invalid(codec::decode(doc.as_bytes()));
    assert!(message.contains("nest deeper"), "{message}");
}

#[test]
fn invalid_utf8_is_rejected_in_both_formats() {
    let json = b"{\"ID\": \"\xff\xfe\"}";
    let (path, message) = invalid(codec::decode(json));
    assert_eq!(path, "ID");
    assert!(
        message.contains("UTF-8") || message.contains("unicode"),
        "{message}"
    );

    let mp = [0x81, 0xa2, b'I', b'D', 0xa2, 0xff, 0xfe];
    let (path, message) = invalid(codec::decode(&mp));
    assert_eq!(path, "ID");
    assert!(message.contains("UTF-8"), "{message}");

    let mp = [0x81, 0xa2, 0xff, 0xfe, 0xc0];
    let (_, message) = invalid(codec::decode(&mp));
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn trailing_data_after_a_report_is_an_error() {
    let (_, message) = invalid(codec::decode(br#"{"ID": "x"} {"ID": "y"}"#));
    assert!(message.contains("trailing"), "{message}");
    let mut mp = codec::to_msgpack(&rescope_report::Report::empty());
    mp.extend_from_slice(&[0x01, 0x02]);
    let (_, message) = invalid(codec::decode(&mp));
    assert_eq!(message, "2 bytes of trailing data after the report");
}

#[test]
fn truncated_msgpack_is_an_error_at_every_cut() {
    let full = codec::to_msgpack(&{
        let mut r = rescope_report::Report::empty();
        r.id = rescope_report::Str::new("abc");
        r
    });
    for cut in 1..full.len() {
        let result = codec::decode_plain(&full[..cut], Format::Msgpack);
        assert!(result.is_err(), "cut at {cut} decoded");
    }
}
