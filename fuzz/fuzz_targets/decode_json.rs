//! Any byte string fed to the JSON decoder either fails with an error or decodes to a
//! report whose encoding is stable: encode(decode(encode(r))) == encode(r).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rescope_report::codec::{self, Format};

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = codec::decode_plain(data, Format::Json) {
        let once = codec::to_json(&report);
        let again = codec::decode_plain(once.as_bytes(), Format::Json).expect("our own JSON decodes");
        assert_eq!(codec::to_json(&again), once, "JSON encoding is not stable");
    }
});
