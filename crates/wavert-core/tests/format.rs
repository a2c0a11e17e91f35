//! WAVEFORMATEX / WAVEFORMATEXTENSIBLE parsing: the supported matrix, every
//! rejection, and arbitrary bytes.

use proptest::prelude::*;
use wavert_core::format::{
    AudioFormat, FormatError, SampleType, KSAUDIO_SPEAKER_5POINT1, KSAUDIO_SPEAKER_7POINT1,
    KSAUDIO_SPEAKER_STEREO, WAVE_FORMAT_EXTENSIBLE, WAVE_FORMAT_IEEE_FLOAT, WAVE_FORMAT_PCM,
};
use wavert_core::guid::{Guid, KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, KSDATAFORMAT_SUBTYPE_PCM};

/// Hand-rolled WAVEFORMATEX, independent of the crate's encoder.
fn wfx(tag: u16, ch: u16, rate: u32, avg: u32, align: u16, bits: u16, cb: u16) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&ch.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&avg.to_le_bytes());
    v.extend_from_slice(&align.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(&cb.to_le_bytes());
    v
}

#[allow(clippy::too_many_arguments)] // mirrors the C structure field by field
fn ext(ch: u16, rate: u32, bits: u16, valid: u16, mask: u32, sub: Guid) -> Vec<u8> {
    let align = ch * bits / 8;
    let mut v = wfx(
        WAVE_FORMAT_EXTENSIBLE,
        ch,
        rate,
        rate * u32::from(align),
        align,
        bits,
        22,
    );
    v.extend_from_slice(&valid.to_le_bytes());
    v.extend_from_slice(&mask.to_le_bytes());
    v.extend_from_slice(&sub.to_le_bytes());
    v
}

fn pcm(ch: u16, rate: u32, bits: u16) -> Vec<u8> {
    let align = ch * bits / 8;
    wfx(
        WAVE_FORMAT_PCM,
        ch,
        rate,
        rate * u32::from(align),
        align,
        bits,
        0,
    )
}

const RATES: [u32; 8] = [
    8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 96_000, 192_000,
];

#[test]
fn whole_pcm_and_float_matrix_parses_with_consistent_fields() {
    let pairs: [(SampleType, u16, u16); 6] = [
        (SampleType::Pcm, 8, 8),
        (SampleType::Pcm, 16, 16),
        (SampleType::Pcm, 24, 24),
        (SampleType::Pcm, 32, 24),
        (SampleType::Pcm, 32, 32),
        (SampleType::Float, 32, 32),
    ];
    for ch in 1..=8u16 {
        for &rate in &RATES {
            for &(t, bits, valid) in &pairs {
                let sub = t.sub_format();
                let mask = if ch == 2 {
                    KSAUDIO_SPEAKER_STEREO
                } else {
                    (1u32 << ch) - 1
                };
                let f = AudioFormat::parse(&ext(ch, rate, bits, valid, mask, sub))
                    .unwrap_or_else(|e| panic!("{ch} ch {rate} Hz {bits}/{valid}: {e:?}"));
                assert_eq!(f.channels(), ch);
                assert_eq!(f.sample_rate(), rate);
                assert_eq!(f.container_bits(), bits);
                assert_eq!(f.valid_bits(), valid);
                assert_eq!(f.channel_mask(), mask);
                assert_eq!(f.sample_type(), t);
                assert_eq!(f.block_align(), u32::from(ch) * u32::from(bits) / 8);
                assert_eq!(f.bytes_per_second(), rate * f.block_align());
            }
        }
    }
}

#[test]
fn plain_waveformatex_pcm_and_float_parse() {
    let f = AudioFormat::parse(&pcm(2, 44_100, 16)).expect("16-bit stereo");
    assert_eq!(
        (f.channels(), f.valid_bits(), f.is_extensible()),
        (2, 16, false)
    );
    assert_eq!(f.channel_mask(), KSAUDIO_SPEAKER_STEREO);
    let f = AudioFormat::parse(&pcm(6, 48_000, 24)).expect("24-bit 5.1");
    assert_eq!(f.channel_mask(), KSAUDIO_SPEAKER_5POINT1);
    let float = wfx(WAVE_FORMAT_IEEE_FLOAT, 2, 48_000, 384_000, 8, 32, 0);
    let f = AudioFormat::parse(&float).expect("float stereo");
    assert_eq!(f.sample_type(), SampleType::Float);
    // PCMWAVEFORMAT: 16 bytes, no cbSize.
    let short = pcm(1, 8_000, 8);
    assert!(AudioFormat::parse(&short[..16]).is_ok());
}

#[test]
fn trailing_bytes_are_ignored() {
    let mut v = ext(
        8,
        192_000,
        32,
        32,
        KSAUDIO_SPEAKER_7POINT1,
        KSDATAFORMAT_SUBTYPE_PCM,
    );
    v.extend_from_slice(&[0xAB; 100]);
    assert!(AudioFormat::parse(&v).is_ok());
}

#[test]
fn every_rejection_has_its_own_error() {
    let stereo16 = |rate| ext(2, rate, 16, 16, 3, KSDATAFORMAT_SUBTYPE_PCM);
    // Too short for anything.
    assert!(matches!(
        AudioFormat::parse(&[1, 0, 2]),
        Err(FormatError::Truncated { available: 3, .. })
    ));
    // EXTENSIBLE whose cbSize promises 22 bytes that are not there.
    let v = stereo16(48_000);
    assert_eq!(
        AudioFormat::parse(&v[..30]),
        Err(FormatError::CbSizeBeyondBuffer {
            cb_size: 22,
            available: 12
        })
    );
    // cbSize too small for EXTENSIBLE.
    let mut v = stereo16(48_000);
    v[16] = 10;
    assert_eq!(AudioFormat::parse(&v), Err(FormatError::CbSizeTooSmall(10)));
    // Unknown tag.
    let v = wfx(0x0055, 2, 44_100, 176_400, 4, 16, 0);
    assert_eq!(
        AudioFormat::parse(&v),
        Err(FormatError::UnsupportedFormatTag(0x55))
    );
    // Channels 0 and 17.
    assert_eq!(
        AudioFormat::parse(&wfx(1, 0, 44_100, 0, 0, 16, 0)),
        Err(FormatError::UnsupportedChannelCount(0))
    );
    assert_eq!(
        AudioFormat::parse(&ext(17, 48_000, 16, 16, 0x1_FFFF, KSDATAFORMAT_SUBTYPE_PCM)),
        Err(FormatError::UnsupportedChannelCount(17))
    );
}

#[test]
fn field_rejections_have_their_own_errors() {
    let stereo16 = |rate| ext(2, rate, 16, 16, 3, KSDATAFORMAT_SUBTYPE_PCM);
    // Rates out of range.
    assert_eq!(
        AudioFormat::parse(&stereo16(7_999)),
        Err(FormatError::UnsupportedSampleRate(7_999))
    );
    assert_eq!(
        AudioFormat::parse(&stereo16(384_001)),
        Err(FormatError::UnsupportedSampleRate(384_001))
    );
    // 12-bit PCM container; 16-bit float; 64-bit float.
    assert_eq!(
        AudioFormat::parse(&pcm(2, 48_000, 12)),
        Err(FormatError::UnsupportedBitsPerSample(12))
    );
    let f16 = wfx(WAVE_FORMAT_IEEE_FLOAT, 2, 48_000, 192_000, 4, 16, 0);
    assert_eq!(
        AudioFormat::parse(&f16),
        Err(FormatError::UnsupportedFloatBits(16))
    );
    // nBlockAlign wrong.
    let v = wfx(WAVE_FORMAT_PCM, 2, 48_000, 192_000, 3, 16, 0);
    assert_eq!(
        AudioFormat::parse(&v),
        Err(FormatError::BlockAlignMismatch {
            expected: 4,
            found: 3
        })
    );
    // nAvgBytesPerSec wrong.
    let v = wfx(WAVE_FORMAT_PCM, 2, 48_000, 192_001, 4, 16, 0);
    assert_eq!(
        AudioFormat::parse(&v),
        Err(FormatError::AvgBytesPerSecMismatch {
            expected: 192_000,
            found: 192_001
        })
    );
    // Valid bits above the container, and an unsupported pair.
    assert_eq!(
        AudioFormat::parse(&ext(2, 48_000, 16, 20, 3, KSDATAFORMAT_SUBTYPE_PCM)),
        Err(FormatError::ValidBitsExceedContainer {
            valid: 20,
            container: 16
        })
    );
    assert_eq!(
        AudioFormat::parse(&ext(2, 48_000, 24, 20, 3, KSDATAFORMAT_SUBTYPE_PCM)),
        Err(FormatError::UnsupportedValidBits {
            valid: 20,
            container: 24
        })
    );
    assert_eq!(
        AudioFormat::parse(&ext(2, 48_000, 32, 24, 3, KSDATAFORMAT_SUBTYPE_IEEE_FLOAT)),
        Err(FormatError::UnsupportedValidBits {
            valid: 24,
            container: 32
        })
    );
}

#[test]
fn mask_subformat_and_output_rejections_have_their_own_errors() {
    let stereo16 = |rate| ext(2, rate, 16, 16, 3, KSDATAFORMAT_SUBTYPE_PCM);
    // Mask naming 6 speakers for 2 channels; reserved bit; SPEAKER_ALL.
    assert_eq!(
        AudioFormat::parse(&ext(2, 48_000, 16, 16, 0x3F, KSDATAFORMAT_SUBTYPE_PCM)),
        Err(FormatError::ChannelMaskCountMismatch {
            channels: 2,
            speakers: 6
        })
    );
    assert_eq!(
        AudioFormat::parse(&ext(1, 48_000, 16, 16, 0x4_0000, KSDATAFORMAT_SUBTYPE_PCM)),
        Err(FormatError::ChannelMaskReservedBits(0x4_0000))
    );
    assert_eq!(
        AudioFormat::parse(&ext(
            2,
            48_000,
            16,
            16,
            0x8000_0003,
            KSDATAFORMAT_SUBTYPE_PCM
        )),
        Err(FormatError::ChannelMaskReservedBits(0x8000_0003))
    );
    // Unknown SubFormat (e.g. AC-3 over S/PDIF's tag 0x92).
    let ac3 = Guid::from_wave_format_tag(0x0092);
    assert_eq!(
        AudioFormat::parse(&ext(2, 48_000, 16, 16, 3, ac3)),
        Err(FormatError::UnknownSubFormat(ac3))
    );
    // Encoding into too small a buffer.
    let f = AudioFormat::parse(&stereo16(48_000)).expect("valid");
    assert_eq!(
        f.write_waveformat(&mut [0u8; 39]),
        Err(FormatError::OutputTooSmall {
            needed: 40,
            available: 39
        })
    );
}

#[test]
fn directout_mask_is_accepted() {
    let f = AudioFormat::parse(&ext(4, 48_000, 16, 16, 0, KSDATAFORMAT_SUBTYPE_PCM))
        .expect("DIRECTOUT");
    assert_eq!(f.channel_mask(), 0);
}

fn valid_format() -> impl Strategy<Value = AudioFormat> {
    (
        prop_oneof![
            Just((SampleType::Pcm, 8u16, 8u16)),
            Just((SampleType::Pcm, 16, 16)),
            Just((SampleType::Pcm, 24, 24)),
            Just((SampleType::Pcm, 32, 24)),
            Just((SampleType::Pcm, 32, 32)),
            Just((SampleType::Float, 32, 32)),
        ],
        1u16..=8,
        8_000u32..=192_000,
        any::<bool>(),
    )
        .prop_map(|((t, bits, valid), ch, rate, extensible)| {
            let valid = if extensible { valid } else { bits };
            AudioFormat::new(
                t,
                ch,
                rate,
                bits,
                valid,
                wavert_core::format::default_channel_mask(ch),
                extensible,
            )
            .expect("strategy builds valid formats")
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_formats_are_consistent(
        bytes in proptest::collection::vec(any::<u8>(), 0..64)
    ) {
        if let Ok(f) = AudioFormat::parse(&bytes) {
            prop_assert!((1..=8).contains(&f.channels()));
            prop_assert!((8_000..=192_000).contains(&f.sample_rate()));
            prop_assert!(f.valid_bits() <= f.container_bits());
            let align = u16::from_le_bytes([bytes[12], bytes[13]]);
            prop_assert_eq!(u32::from(align), f.block_align());
        }
    }

    #[test]
    fn encode_then_parse_round_trips(f in valid_format(), pad in 0usize..16) {
        let mut buf = vec![0u8; f.encoded_len() + pad];
        let n = f.write_waveformat(&mut buf).expect("fits");
        prop_assert_eq!(n, f.encoded_len());
        prop_assert_eq!(AudioFormat::parse(&buf), Ok(f));
        // Any truncation of an EXTENSIBLE structure is rejected, never misread.
        if f.is_extensible() {
            for cut in 0..n {
                prop_assert!(AudioFormat::parse(&buf[..cut]).is_err());
            }
        }
    }

    #[test]
    fn single_field_corruption_is_rejected_or_self_consistent(
        f in valid_format(), at in 0usize..40, value in any::<u8>()
    ) {
        let mut buf = [0u8; 40];
        let n = f.write_waveformat(&mut buf).expect("fits");
        buf[at % n] = value;
        if let Ok(g) = AudioFormat::parse(&buf[..n]) {
            // Whatever still parses must describe its own bytes.
            prop_assert_eq!(u32::from(u16::from_le_bytes([buf[12], buf[13]])), g.block_align());
            prop_assert_eq!(u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]), g.bytes_per_second());
        }
    }
}

#[test]
fn subformat_guids_match_the_tags() {
    assert_eq!(
        KSDATAFORMAT_SUBTYPE_PCM,
        Guid::from_wave_format_tag(WAVE_FORMAT_PCM)
    );
    assert_eq!(
        KSDATAFORMAT_SUBTYPE_IEEE_FLOAT,
        Guid::from_wave_format_tag(WAVE_FORMAT_IEEE_FLOAT)
    );
}

/// Above 7.1 the default layouts add the height and wide pairs in a fixed
/// order: 10 channels are 7.1.2, 12 are 7.1.4, 16 name 16 speakers; each
/// count's mask names exactly its channel count of speakers and holds the
/// one below it.
#[test]
fn default_masks_above_eight_channels_are_the_height_layouts() {
    use wavert_core::format::{
        default_channel_mask, KSAUDIO_SPEAKER_7POINT1_SURROUND, SPEAKER_LAYOUT_7POINT1POINT4,
    };
    assert_eq!(
        default_channel_mask(10),
        KSAUDIO_SPEAKER_7POINT1_SURROUND | 0x1000 | 0x4000
    );
    assert_eq!(default_channel_mask(12), SPEAKER_LAYOUT_7POINT1POINT4);
    assert_eq!(
        SPEAKER_LAYOUT_7POINT1POINT4,
        0x63F | 0x1000 | 0x4000 | 0x8000 | 0x2_0000
    );
    for channels in 1..=16u16 {
        let mask = default_channel_mask(channels);
        assert_eq!(
            mask.count_ones(),
            u32::from(channels),
            "{channels} channels"
        );
        if channels > 8 {
            let below = default_channel_mask(channels - 1);
            assert_eq!(mask & below, below, "{channels} channels");
        }
    }
    assert_eq!(default_channel_mask(17), 0, "no layout: DIRECTOUT");
}
