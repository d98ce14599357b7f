//! Any byte string fed to the msgpack decoder either fails with an error or decodes to
//! a report whose encoding is stable: encode(decode(encode(r))) == encode(r).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rescope_report::codec::{self, Format};

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = codec::decode_plain(data, Format::Msgpack) {
        let once = codec::to_msgpack(&report);
        let again = codec::decode_plain(&once, Format::Msgpack).expect("our own msgpack decodes");
        assert_eq!(codec::to_msgpack(&again), once, "msgpack encoding is not stable");
    }
});
