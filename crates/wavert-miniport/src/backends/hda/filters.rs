//! The HD Audio wave filters: the static shape, and the host pins' ranges
//! built from the codec at start.
//!
//! The shared wave-filter shape (host pin 0, DAC/ADC node, bridge pin 1,
//! `crate::filters`), so the shared topology filters and physical
//! connection table serve HD Audio too. The static host range is the
//! envelope of what the stream format word can say for stereo integer PCM
//! (HDA spec 3.7.1: 8 to 192 kHz; 16-bit samples, or 20, 24 and 32 bits in
//! 32-bit containers). What a stream may open with is the codec's
//! converter's own list (its supported PCM sizes and rates parameter, HDA
//! spec 7.3.4.7), so the filters the device registers carry ranges built
//! from that list at start ([`codec_wave_filter`]: one range per listed
//! rate and sample size), and advertise nothing the codec refuses.

use alloc::vec::Vec;
use portcls_sys::{
    KSDATAFORMAT_SUBTYPE_PCM, KSDATARANGE_AUDIO, PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR,
};

use wavert_com::{NtResult, NtStatus};
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::hda::codec::{PcmSupport, PCM_RATES};
use wavert_core::range::DeviceRange;

use crate::direction::Direction;
use crate::filters::{
    audio_range, host_range_table, wave_filter, wave_pins, DataRangeTable, RuntimeWaveFilter,
};

/// Channels of both streams (QEMU's converters are stereo; the walk keeps
/// the first stereo-capable path).
pub const CHANNELS: u16 = 2;

/// The host pins' range (see the module comment).
pub const HDA_RANGE: DeviceRange = DeviceRange {
    sample_type: SampleType::Pcm,
    max_channels: CHANNELS,
    min_bits: 16,
    max_bits: 32,
    min_rate: 8_000,
    max_rate: 192_000,
    containers_for_24: &[32],
};

/// The default format of both directions: 48 kHz, 16-bit, stereo, which
/// every HD Audio codec supports (HDA spec 7.3.4.7: 48 kHz and 16 bits are
/// required of converters).
#[allow(
    clippy::panic,
    reason = "evaluated at compile time: an invalid default fails the build"
)]
pub const DEFAULT_FORMAT: AudioFormat =
    match AudioFormat::extensible(SampleType::Pcm, CHANNELS, 48_000, 16, 16) {
        Ok(format) => format,
        Err(_) => panic!("the HD Audio default format is not a valid format"),
    };

static HDA_KSRANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_PCM, &HDA_RANGE);
/// The range, then its mode attribute list.
static HDA_KSRANGES: DataRangeTable<2> = host_range_table([&HDA_KSRANGE]);

static RENDER_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Render, &HDA_KSRANGES);
static CAPTURE_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Capture, &HDA_KSRANGES);

/// The HD Audio wave render filter (output converter).
pub const HDA_WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR =
    wave_filter(Direction::Render, &RENDER_PINS);
/// The HD Audio wave capture filter (input converter).
pub const HDA_WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR =
    wave_filter(Direction::Capture, &CAPTURE_PINS);

/// Sample sizes a codec's ranges may offer: 16-bit samples, 24 and 32 bits
/// in 32-bit containers. (20-bit samples, which the format word can also
/// say, are not offered: WaveRT clients ask for 24 or 32.)
const OFFERED_BITS: [u16; 3] = [16, 24, 32];

/// Whether a range of `rate` Hz and `bits`-bit samples is one the host pin
/// may offer for a converter listing `pcm`.
fn offered(pcm: PcmSupport, rate: u32, bits: u16) -> bool {
    (HDA_RANGE.min_rate..=HDA_RANGE.max_rate).contains(&rate)
        && pcm.has_rate(rate)
        && pcm.has_bits(bits)
}

/// The single-format range of `rate` Hz, `bits`-bit stereo.
const fn single_range(rate: u32, bits: u16) -> DeviceRange {
    DeviceRange {
        min_bits: bits,
        max_bits: bits,
        min_rate: rate,
        max_rate: rate,
        ..HDA_RANGE
    }
}

/// The host pin's ranges for a converter that lists `pcm`.
///
/// One range per listed rate and offered sample size inside [`HDA_RANGE`],
/// each a single rate and size (stereo), so that every format they
/// describe is one the converter takes. The range holding
/// [`DEFAULT_FORMAT`] comes first: a client range that allows everything
/// meets the pin's first range (the port tries them in order), and must get
/// the default format. IRQL: `PASSIVE_LEVEL` (it allocates; the list is
/// built on the heap, not in a kernel stack frame).
///
/// # Errors
///
/// `STATUS_INSUFFICIENT_RESOURCES` without memory for the list.
pub fn codec_ranges(pcm: PcmSupport) -> NtResult<Vec<DeviceRange>> {
    let listed = || {
        PCM_RATES.iter().flat_map(move |&rate| {
            OFFERED_BITS
                .iter()
                .filter(move |&&bits| offered(pcm, rate, bits))
                .map(move |&bits| single_range(rate, bits))
        })
    };
    let mut ranges = Vec::new();
    ranges
        .try_reserve_exact(listed().count())
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    ranges.extend(listed().filter(|r| r.contains(&DEFAULT_FORMAT)));
    ranges.extend(listed().filter(|r| !r.contains(&DEFAULT_FORMAT)));
    Ok(ranges)
}

/// `direction`'s wave filter with the host pin offering what a converter
/// listing `pcm` takes ([`codec_ranges`]). IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
///
/// `STATUS_NOT_SUPPORTED` when the converter lists no format the stream
/// format word can say; `STATUS_INSUFFICIENT_RESOURCES` without memory.
pub fn codec_wave_filter(direction: Direction, pcm: PcmSupport) -> NtResult<RuntimeWaveFilter> {
    let shape = match direction {
        Direction::Render => &HDA_WAVE_RENDER_FILTER,
        Direction::Capture => &HDA_WAVE_CAPTURE_FILTER,
    };
    RuntimeWaveFilter::new(shape, KSDATAFORMAT_SUBTYPE_PCM, codec_ranges(pcm)?)
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    reason = "test assertions on tables built a line above"
)]
mod tests {
    use super::*;
    use crate::filters::{MODE_ATTRIBUTE_LIST, WAVE_HOST_PIN};
    use portcls_sys::{KSDATARANGE, KSDATARANGE_ATTRIBUTES};
    use wavert_com::NtStatus;

    /// A PCM parameter listing `rates` (HDA rate indices) and `bits`
    /// (HDA size indices), as a converter answers it (HDA spec 7.3.4.7).
    fn pcm(rates: &[u32], bits: &[u32]) -> PcmSupport {
        PcmSupport(
            rates.iter().map(|r| 1 << r).sum::<u32>()
                + bits.iter().map(|b| 1 << (16 + b)).sum::<u32>(),
        )
    }

    #[test]
    fn a_codecs_ranges_are_its_rates_and_sizes_default_first() {
        // 16 to 96 kHz (indices 2..=8), 16-bit only: QEMU's hda-duplex.
        let listed = codec_ranges(pcm(&[2, 3, 4, 5, 6, 7, 8], &[1])).unwrap();
        assert_eq!(listed.len(), 7);
        assert!(listed[0].contains(&DEFAULT_FORMAT), "{:?}", listed[0]);
        let mut rates: Vec<u32> = listed.iter().map(|r| r.min_rate).collect();
        rates.sort_unstable();
        assert_eq!(
            rates,
            [16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000]
        );
        assert!(listed
            .iter()
            .all(|r| r.min_rate == r.max_rate && (r.min_bits, r.max_bits) == (16, 16)));
        // 8 kHz to 384 kHz with 16/20/24/32 bits: 384 kHz and 20-bit
        // samples are not offered, 8-bit neither.
        let all = codec_ranges(pcm(&(0..12).collect::<Vec<_>>(), &[0, 1, 2, 3, 4])).unwrap();
        assert_eq!(all.len(), 11 * 3);
        assert!(all[0].contains(&DEFAULT_FORMAT));
    }

    #[test]
    fn a_runtime_filter_points_its_host_pin_at_the_codecs_ranges() {
        let filter = codec_wave_filter(Direction::Render, pcm(&[5, 6], &[1, 3])).unwrap();
        assert_eq!(filter.device_ranges().len(), 4);
        let descriptor = filter.descriptor();
        assert_eq!(descriptor.PinCount, HDA_WAVE_RENDER_FILTER.PinCount);
        // SAFETY: the descriptor's tables are owned by `filter`, alive here.
        let pins =
            unsafe { core::slice::from_raw_parts(descriptor.Pins, descriptor.PinCount as usize) };
        let host = &pins[WAVE_HOST_PIN as usize].KsPinDescriptor;
        assert_eq!(host.DataRangesCount, 8);
        // SAFETY: as above: `DataRangesCount` pointers.
        let table = unsafe { core::slice::from_raw_parts(host.DataRanges, 8) };
        for (pair, device) in table.chunks_exact(2).zip(filter.device_ranges()) {
            // SAFETY: even entries are the filter's KSDATARANGE_AUDIO.
            let range = unsafe { &*pair[0].cast::<KSDATARANGE_AUDIO>() };
            assert_ne!(range.DataRange.Flags & KSDATARANGE_ATTRIBUTES, 0);
            assert_eq!(range.MinimumSampleFrequency, device.min_rate);
            assert_eq!(range.MaximumSampleFrequency, device.max_rate);
            assert_eq!(range.MinimumBitsPerSample, u32::from(device.min_bits));
            assert_eq!(range.MaximumBitsPerSample, u32::from(device.max_bits));
            assert_eq!(
                pair[1],
                core::ptr::addr_of!(MODE_ATTRIBUTE_LIST)
                    .cast_mut()
                    .cast::<KSDATARANGE>()
            );
        }
        // The bridge pin is the static shape's.
        // SAFETY: the static shape's own pin table.
        let shape = unsafe { core::slice::from_raw_parts(HDA_WAVE_RENDER_FILTER.Pins, 2) };
        assert_eq!(
            pins[1].KsPinDescriptor.DataRanges,
            shape[1].KsPinDescriptor.DataRanges
        );
    }

    #[test]
    fn a_converter_without_a_usable_format_gets_no_filter() {
        // Only 384 kHz, only 8-bit: nothing the format word or the ranges say.
        let error = codec_wave_filter(Direction::Capture, pcm(&[11], &[0])).unwrap_err();
        assert_eq!(error, NtStatus::NOT_SUPPORTED);
    }
}
