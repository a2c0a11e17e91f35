//! Any bytes as a client data range against two device ranges: never panics;
//! a result always lies inside the device range and serialises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::range::{intersect, write_ks_data_format, DeviceRange};

const DEVICES: [DeviceRange; 2] = [
    DeviceRange {
        sample_type: SampleType::Pcm,
        max_channels: 8,
        min_bits: 8,
        max_bits: 32,
        min_rate: 8_000,
        max_rate: 192_000,
        containers_for_24: &[32],
    },
    DeviceRange {
        sample_type: SampleType::Float,
        max_channels: 2,
        min_bits: 32,
        max_bits: 32,
        min_rate: 44_100,
        max_rate: 48_000,
        containers_for_24: &[],
    },
];

fuzz_target!(|data: &[u8]| {
    let Ok(preferred) = AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 32, 24) else {
        return;
    };
    for device in &DEVICES {
        if let Ok(format) = intersect(data, device, &preferred) {
            assert!(device.contains(&format));
            let mut out = [0u8; 104];
            assert!(write_ks_data_format(&format, &mut out).is_ok());
        }
    }
});
