//! Data ranges and `DataRangeIntersection`.

use proptest::prelude::*;
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::guid::{
    Guid, KSDATAFORMAT_SPECIFIER_NONE, KSDATAFORMAT_SPECIFIER_WAVEFORMATEX,
    KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, KSDATAFORMAT_SUBTYPE_PCM, KSDATAFORMAT_TYPE_AUDIO,
};
use wavert_core::range::{
    intersect, ks_data_format_len, write_ks_data_format, DeviceRange, IntersectError,
    KSDATARANGE_AUDIO_SIZE,
};

const DEVICE: DeviceRange = DeviceRange {
    sample_type: SampleType::Pcm,
    max_channels: 8,
    min_bits: 16,
    max_bits: 24,
    min_rate: 44_100,
    max_rate: 96_000,
    container_for_24: 32,
};

fn header(size: u32, major: Guid, sub: Guid, spec: Guid) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [size, 0, 0, 0] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    for g in [major, sub, spec] {
        v.extend_from_slice(&g.to_le_bytes());
    }
    v
}

fn client_range(sub: Guid, ch: u32, bits: (u32, u32), rates: (u32, u32)) -> Vec<u8> {
    let mut v = header(
        84,
        KSDATAFORMAT_TYPE_AUDIO,
        sub,
        KSDATAFORMAT_SPECIFIER_WAVEFORMATEX,
    );
    for x in [ch, bits.0, bits.1, rates.0, rates.1] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

fn client_format(f: &AudioFormat) -> Vec<u8> {
    let mut v = vec![0u8; ks_data_format_len(f)];
    write_ks_data_format(f, &mut v).expect("sized");
    v
}

#[test]
fn range_client_gets_best_common_format() {
    let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 2, (8, 32), (8_000, 48_000));
    let f = intersect(&c, &DEVICE).expect("overlap");
    assert_eq!(f.channels(), 2);
    assert_eq!(f.valid_bits(), 24);
    assert_eq!(
        f.container_bits(),
        32,
        "24 valid bits use the device's container"
    );
    assert_eq!(f.sample_rate(), 48_000);
    // Wildcard sub-format and a client wider than the device: device maxima win.
    let c = client_range(Guid::NULL, u32::MAX, (0, 64), (1, 1_000_000));
    let f = intersect(&c, &DEVICE).expect("overlap");
    assert_eq!(
        (f.channels(), f.valid_bits(), f.sample_rate()),
        (8, 24, 96_000)
    );
}

#[test]
fn bare_wildcard_ksdatarange_gets_device_best() {
    let c = header(64, Guid::NULL, Guid::NULL, Guid::NULL);
    assert_eq!(intersect(&c, &DEVICE), DEVICE.best_format());
}

#[test]
fn specific_format_inside_is_returned_exactly_outside_rejected() {
    let inside = AudioFormat::extensible(SampleType::Pcm, 6, 48_000, 16, 16).expect("valid");
    assert_eq!(intersect(&client_format(&inside), &DEVICE), Ok(inside));
    let too_fast = AudioFormat::extensible(SampleType::Pcm, 2, 192_000, 16, 16).expect("valid");
    assert_eq!(
        intersect(&client_format(&too_fast), &DEVICE),
        Err(IntersectError::FormatOutsideDeviceRange)
    );
    let packed24 = AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 24, 24).expect("valid");
    assert_eq!(
        intersect(&client_format(&packed24), &DEVICE),
        Err(IntersectError::FormatOutsideDeviceRange),
        "device uses 24-in-32"
    );
}

#[test]
fn every_rejection_has_its_own_error() {
    assert!(matches!(
        intersect(&[0; 10], &DEVICE),
        Err(IntersectError::Truncated { .. })
    ));
    let mut c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 2, (16, 16), (48_000, 48_000));
    c[0] = 200; // FormatSize beyond the bytes.
    assert_eq!(
        intersect(&c, &DEVICE),
        Err(IntersectError::BadFormatSize {
            declared: 200,
            available: 84
        })
    );
    let video = Guid::from_wave_format_tag(0x1234);
    let c = header(84, video, Guid::NULL, Guid::NULL);
    let mut c84 = c;
    c84.resize(84, 0);
    assert_eq!(
        intersect(&c84, &DEVICE),
        Err(IntersectError::NotAudio(video))
    );
    let mut c = header(
        84,
        KSDATAFORMAT_TYPE_AUDIO,
        Guid::NULL,
        KSDATAFORMAT_SPECIFIER_NONE,
    );
    c.resize(84, 0);
    assert_eq!(
        intersect(&c, &DEVICE),
        Err(IntersectError::UnsupportedSpecifier(
            KSDATAFORMAT_SPECIFIER_NONE
        ))
    );
    let c = client_range(
        KSDATAFORMAT_SUBTYPE_IEEE_FLOAT,
        2,
        (32, 32),
        (48_000, 48_000),
    );
    assert_eq!(
        intersect(&c, &DEVICE),
        Err(IntersectError::SubFormatMismatch(
            KSDATAFORMAT_SUBTYPE_IEEE_FLOAT
        ))
    );
    let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 2, (24, 16), (48_000, 48_000));
    assert_eq!(intersect(&c, &DEVICE), Err(IntersectError::InvertedRange));
    let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 0, (16, 16), (48_000, 48_000));
    assert_eq!(
        intersect(&c, &DEVICE),
        Err(IntersectError::NoCommonChannels)
    );
    let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 2, (8, 8), (48_000, 48_000));
    assert_eq!(
        intersect(&c, &DEVICE),
        Err(IntersectError::NoCommonBitDepth)
    );
    let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 2, (16, 16), (8_000, 22_050));
    assert_eq!(
        intersect(&c, &DEVICE),
        Err(IntersectError::NoCommonSampleRate)
    );
    // A specific format with a broken WAVEFORMATEX.
    let f = AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 16, 16).expect("valid");
    let mut c = client_format(&f);
    c[64 + 12] = 5; // nBlockAlign
    assert!(matches!(
        intersect(&c, &DEVICE),
        Err(IntersectError::Format(_))
    ));
    // KSDATAFORMAT says float, WAVEFORMATEX says PCM.
    let mut c = client_format(&f);
    c[32..48].copy_from_slice(&KSDATAFORMAT_SUBTYPE_IEEE_FLOAT.to_le_bytes());
    assert_eq!(
        intersect(&c, &DEVICE),
        Err(IntersectError::SubFormatMismatch(
            KSDATAFORMAT_SUBTYPE_IEEE_FLOAT
        ))
    );
    // Result buffer too small.
    assert_eq!(
        write_ks_data_format(&f, &mut [0u8; 50]),
        Err(IntersectError::OutputTooSmall {
            needed: 104,
            available: 50
        })
    );
}

#[test]
fn device_range_serialises_as_ksdatarange_audio_and_intersects_with_itself() {
    let mut buf = [0u8; KSDATARANGE_AUDIO_SIZE];
    assert_eq!(DEVICE.write_ks_data_range(&mut buf), Ok(84));
    assert_eq!(u32::from_le_bytes([buf[64], buf[65], buf[66], buf[67]]), 8);
    assert_eq!(intersect(&buf, &DEVICE), DEVICE.best_format());
}

fn arb_range() -> impl Strategy<Value = (u32, u32, u32, u32, u32)> {
    (0u32..12, 0u32..40, 0u32..40, 0u32..250_000, 0u32..250_000)
}

proptest! {
    /// Whatever the client range, a result lies in both ranges and no better
    /// format (more channels, bits or rate) lies in both.
    #[test]
    fn intersection_is_inside_both_and_maximal(r in arb_range()) {
        let (ch, b0, b1, r0, r1) = r;
        let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, ch, (b0.min(b1), b0.max(b1)), (r0.min(r1), r0.max(r1)));
        match intersect(&c, &DEVICE) {
            Ok(f) => {
                prop_assert!(DEVICE.contains(&f));
                prop_assert!(u32::from(f.channels()) <= ch);
                prop_assert!(u32::from(f.valid_bits()) >= b0.min(b1) && u32::from(f.valid_bits()) <= b0.max(b1));
                prop_assert!(f.sample_rate() >= r0.min(r1) && f.sample_rate() <= r0.max(r1));
                prop_assert_eq!(u32::from(f.channels()), ch.min(8));
                prop_assert_eq!(f.sample_rate(), r0.max(r1).min(96_000));
                for better in [32u32, 24, 16, 8].into_iter().filter(|&b| b > u32::from(f.valid_bits())) {
                    prop_assert!(!(better >= b0.min(b1).max(16) && better <= b0.max(b1).min(24)));
                }
            }
            Err(e) => prop_assert!(matches!(e,
                IntersectError::NoCommonChannels | IntersectError::NoCommonBitDepth | IntersectError::NoCommonSampleRate)),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..140)) {
        if let Ok(f) = intersect(&bytes, &DEVICE) {
            prop_assert!(DEVICE.contains(&f));
        }
    }
}
