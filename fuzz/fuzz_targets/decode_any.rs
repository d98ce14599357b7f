//! The full decoding path: format detection, gzip with a small limit, both decoders.
//! It must never panic, and must respect the decompression limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rescope_report::codec::{self, DecodeError, DecodeLimits};

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits { max_decompressed: 1 << 20 };
    match codec::decode_with(data, limits) {
        Ok(_) | Err(DecodeError::TooLarge { .. }) => {}
        Err(e) => {
            // Every error renders to a message.
            assert!(!e.to_string().is_empty());
        }
    }
});
