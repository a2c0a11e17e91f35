//! Any bytes as a WAVEFORMATEX(TENSIBLE): never panics; an accepted format
//! re-encodes and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wavert_core::format::AudioFormat;

fuzz_target!(|data: &[u8]| {
    if let Ok(format) = AudioFormat::parse(data) {
        let mut buf = [0u8; 40];
        let n = format.write_waveformat(&mut buf).expect("40 bytes always suffice");
        assert_eq!(AudioFormat::parse(&buf[..n]), Ok(format));
    }
});
