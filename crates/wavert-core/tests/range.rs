//! Data ranges and `DataRangeIntersection`.

use proptest::prelude::*;
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::guid::{
    Guid, KSDATAFORMAT_SPECIFIER_NONE, KSDATAFORMAT_SPECIFIER_WAVEFORMATEX,
    KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, KSDATAFORMAT_SUBTYPE_PCM, KSDATAFORMAT_TYPE_AUDIO,
};
use wavert_core::range::{
    ks_data_format_len, write_ks_data_format, DeviceRange, IntersectError, KSDATARANGE_AUDIO_SIZE,
};

const DEVICE: DeviceRange = DeviceRange {
    sample_type: SampleType::Pcm,
    max_channels: 8,
    min_bits: 16,
    max_bits: 24,
    min_rate: 44_100,
    max_rate: 96_000,
    containers_for_24: &[32],
};

/// The device's default format: what a wildcard client gets.
fn preferred() -> AudioFormat {
    AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 32, 24).expect("valid")
}

fn intersect(client: &[u8], device: &DeviceRange) -> Result<AudioFormat, IntersectError> {
    wavert_core::range::intersect(client, device, &preferred())
}

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
fn range_client_gets_the_common_format_closest_to_the_default() {
    let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 2, (8, 32), (8_000, 48_000));
    assert_eq!(intersect(&c, &DEVICE), Ok(preferred()));
    // Wildcard sub-format and a client wider than the device: the default
    // format, not the corner of the range (8 channels at 96 kHz).
    let c = client_range(Guid::NULL, u32::MAX, (0, 64), (1, 1_000_000));
    let f = intersect(&c, &DEVICE).expect("overlap");
    assert_eq!(f, preferred());
    assert_ne!(
        (f.channels(), f.sample_rate()),
        (DEVICE.max_channels, DEVICE.max_rate)
    );
    // Fields the client constrains get the highest value both allow.
    let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 1, (16, 16), (88_200, 96_000));
    let f = intersect(&c, &DEVICE).expect("overlap");
    assert_eq!(
        (
            f.channels(),
            f.valid_bits(),
            f.container_bits(),
            f.sample_rate()
        ),
        (1, 16, 16, 96_000)
    );
    assert_eq!(f.channel_mask(), wavert_core::format::KSAUDIO_SPEAKER_MONO);
    let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 6, (0, 64), (1, 1_000_000));
    let f = intersect(&c, &DEVICE).expect("overlap");
    assert_eq!(
        (f.channels(), f.valid_bits(), f.sample_rate()),
        (6, 24, 48_000),
        "six channels asked for, bits and rate left open"
    );
    let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 8, (8, 32), (8_000, 44_100));
    assert_eq!(intersect(&c, &DEVICE).map(|f| f.sample_rate()), Ok(44_100));
}

#[test]
fn a_constrained_depth_is_the_highest_common_one() {
    const WIDE: DeviceRange = DeviceRange {
        max_bits: 32,
        min_bits: 8,
        containers_for_24: &[32, 24],
        ..DEVICE
    };
    let depth = |bits: (u32, u32)| {
        let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 2, bits, (48_000, 48_000));
        intersect(&c, &WIDE).map(|f| (f.valid_bits(), f.container_bits()))
    };
    assert_eq!(depth((0, 64)), Ok((24, 32)), "left open: the default's");
    assert_eq!(depth((25, 32)), Ok((32, 32)));
    assert_eq!(depth((8, 23)), Ok((16, 16)));
    assert_eq!(depth((17, 23)), Err(IntersectError::NoCommonBitDepth));
}

#[test]
fn an_open_depth_the_range_lacks_is_the_nearest_deeper_one_then_shallower() {
    let open = client_range(Guid::NULL, u32::MAX, (0, 64), (1, 1_000_000));
    let no_24 = DeviceRange {
        min_bits: 8,
        max_bits: 32,
        containers_for_24: &[],
        ..DEVICE
    };
    assert_eq!(intersect(&open, &no_24).map(|f| f.valid_bits()), Ok(32));
    let shallow = DeviceRange {
        min_bits: 8,
        max_bits: 16,
        ..DEVICE
    };
    assert_eq!(intersect(&open, &shallow).map(|f| f.valid_bits()), Ok(16));
}

#[test]
fn the_container_for_24_bits_follows_the_default_when_the_range_allows_it() {
    let both: &'static [u16] = &[32, 24];
    let packed = AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 24, 24).expect("valid");
    let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, 2, (24, 24), (48_000, 48_000));
    let device = DeviceRange {
        containers_for_24: both,
        ..DEVICE
    };
    let got = wavert_core::range::intersect(&c, &device, &packed).expect("overlap");
    assert_eq!(got.container_bits(), 24, "the default's own container");
    let only_packed = DeviceRange {
        containers_for_24: &[24],
        ..DEVICE
    };
    assert_eq!(
        intersect(&c, &only_packed).map(|f| f.container_bits()),
        Ok(24),
        "the range's container when the default's is not allowed"
    );
    let none = DeviceRange {
        containers_for_24: &[],
        ..DEVICE
    };
    assert_eq!(intersect(&c, &none), Err(IntersectError::NoCommonBitDepth));
    assert!(!none.contains(&preferred()));
    assert!(!only_packed.contains(&preferred()));
    assert!(DEVICE.contains(&preferred()));
}

#[test]
fn bare_wildcard_ksdatarange_gets_the_default_format() {
    let c = header(64, Guid::NULL, Guid::NULL, Guid::NULL);
    assert_eq!(intersect(&c, &DEVICE), DEVICE.closest_format(&preferred()));
    assert_eq!(intersect(&c, &DEVICE), Ok(preferred()));
    // A default the range cannot hold is clamped into it.
    let corner = AudioFormat::extensible(SampleType::Pcm, 8, 192_000, 32, 32).expect("valid");
    let f = wavert_core::range::intersect(&c, &DEVICE, &corner).expect("overlap");
    assert_eq!(
        (f.channels(), f.valid_bits(), f.sample_rate()),
        (8, 24, 96_000)
    );
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
    // The range names limits inside the format space: its highest format.
    let f = intersect(&buf, &DEVICE).expect("overlap");
    assert_eq!(
        (f.channels(), f.valid_bits(), f.sample_rate()),
        (8, 24, 96_000)
    );
    assert_eq!(DEVICE.closest_format(&preferred()), Ok(preferred()));
}

fn arb_range() -> impl Strategy<Value = (u32, u32, u32, u32, u32)> {
    (0u32..20, 0u32..40, 0u32..40, 0u32..250_000, 0u32..250_000)
}

proptest! {
    /// Whatever the client range, a result lies in both ranges; each field
    /// the client constrains is the highest common value, each it leaves
    /// open the default's (clamped; 24 bits is in the device range).
    #[test]
    fn intersection_is_inside_both_highest_where_constrained_default_where_open(r in arb_range()) {
        let (ch, b0, b1, r0, r1) = r;
        let (lo_bits, hi_bits) = (b0.min(b1), b0.max(b1));
        let (lo_rate, hi_rate) = (r0.min(r1), r0.max(r1));
        let c = client_range(KSDATAFORMAT_SUBTYPE_PCM, ch, (lo_bits, hi_bits), (lo_rate, hi_rate));
        match intersect(&c, &DEVICE) {
            Ok(f) => {
                prop_assert!(DEVICE.contains(&f));
                prop_assert!(u32::from(f.valid_bits()) >= lo_bits && u32::from(f.valid_bits()) <= hi_bits);
                let channels = if ch > 16 { 2 } else { ch.min(u32::from(DEVICE.max_channels)) };
                prop_assert_eq!(u32::from(f.channels()), channels);
                let rate = if lo_rate <= 8_000 && hi_rate >= 192_000 {
                    48_000
                } else {
                    hi_rate.min(96_000)
                };
                prop_assert_eq!(f.sample_rate(), rate);
                // Open (8 to 32): the default's 24; limited: the highest
                // common, 24 whenever the client allows it.
                let bits = if (lo_bits..=hi_bits).contains(&24) { 24 } else { 16 };
                prop_assert_eq!(u32::from(f.valid_bits()), bits);
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
