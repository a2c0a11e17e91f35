//! HD Audio codec verbs, parameters, the stream format word and the walk
//! of a codec's widget tree to its render and capture paths.
//!
//! Verb layout (HDA spec 7.3, 7.1.2): codec address bits 31:28, node id
//! bits 26:20, then either a 12-bit verb with an 8-bit payload or a 4-bit
//! verb with a 16-bit payload in bits 19:0.

use super::HdaError;

/// Parameter ids for [`Verb::get_parameter`] (HDA spec 7.3.4).
pub mod param {
    /// Vendor and device id (root node).
    pub const VENDOR_ID: u8 = 0x00;
    /// Start node and node count of the node's children.
    pub const NODE_COUNT: u8 = 0x04;
    /// Function group type (bits 7:0; 1 = audio).
    pub const FUNCTION_TYPE: u8 = 0x05;
    /// Audio widget capabilities.
    pub const AUDIO_WIDGET_CAP: u8 = 0x09;
    /// Supported PCM sizes and rates.
    pub const PCM: u8 = 0x0A;
    /// Supported stream formats (bit 0 PCM).
    pub const STREAM_FORMATS: u8 = 0x0B;
    /// Pin capabilities.
    pub const PIN_CAP: u8 = 0x0C;
    /// Input amplifier capabilities.
    pub const AMP_IN_CAP: u8 = 0x0D;
    /// Connection list length.
    pub const CONNECTION_LIST_LENGTH: u8 = 0x0E;
    /// Output amplifier capabilities.
    pub const AMP_OUT_CAP: u8 = 0x12;
}

/// 12-bit verb ids (HDA spec 7.3.3).
pub mod id {
    /// Get parameter.
    pub const GET_PARAMETER: u16 = 0xF00;
    /// Get connection list entries from an index.
    pub const GET_CONNECTION_LIST: u16 = 0xF02;
    /// Set power state.
    pub const SET_POWER_STATE: u16 = 0x705;
    /// Set converter stream and channel.
    pub const SET_CONVERTER_STREAM: u16 = 0x706;
    /// Get converter stream and channel.
    pub const GET_CONVERTER_STREAM: u16 = 0xF06;
    /// Set pin widget control.
    pub const SET_PIN_CONTROL: u16 = 0x707;
    /// Get configuration default.
    pub const GET_CONFIG_DEFAULT: u16 = 0xF1C;
    /// 4-bit verb: set converter format (16-bit payload).
    pub const SET_CONVERTER_FORMAT: u8 = 0x2;
    /// 4-bit verb: get converter format.
    pub const GET_CONVERTER_FORMAT: u8 = 0xA;
    /// 4-bit verb: set amplifier gain/mute.
    pub const SET_AMP_GAIN_MUTE: u8 = 0x3;
    /// 4-bit verb: get amplifier gain/mute.
    pub const GET_AMP_GAIN_MUTE: u8 = 0xB;

    /// Pin widget control: output enable (7.3.3.13).
    pub const PIN_OUT_ENABLE: u8 = 0x40;
    /// Pin widget control: input enable.
    pub const PIN_IN_ENABLE: u8 = 0x20;
    /// Set amp payload: output amplifier (7.3.3.7).
    pub const AMP_SET_OUTPUT: u16 = 1 << 15;
    /// Set amp payload: input amplifier.
    pub const AMP_SET_INPUT: u16 = 1 << 14;
    /// Set amp payload: left channel.
    pub const AMP_SET_LEFT: u16 = 1 << 13;
    /// Set amp payload: right channel.
    pub const AMP_SET_RIGHT: u16 = 1 << 12;
    /// Set amp payload: mute.
    pub const AMP_MUTE: u16 = 1 << 7;
}

/// One command to one node of one codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verb {
    /// Codec address (0..=14).
    pub codec: u8,
    /// Node id (7 bits: direct addressing).
    pub node: u8,
    /// Bits 19:0: verb id and payload.
    pub payload: u32,
}

impl Verb {
    /// A 12-bit verb with an 8-bit payload.
    #[must_use]
    pub const fn long_id(codec: u8, node: u8, verb: u16, data: u8) -> Self {
        Self {
            codec,
            node,
            payload: ((verb as u32 & 0xFFF) << 8) | data as u32,
        }
    }

    /// A 4-bit verb with a 16-bit payload.
    #[must_use]
    pub const fn short_id(codec: u8, node: u8, verb: u8, data: u16) -> Self {
        Self {
            codec,
            node,
            payload: ((verb as u32 & 0xF) << 16) | data as u32,
        }
    }

    /// Get parameter `id` of `node`.
    #[must_use]
    pub const fn get_parameter(codec: u8, node: u8, id: u8) -> Self {
        Self::long_id(codec, node, id::GET_PARAMETER, id)
    }

    /// The 32-bit command word.
    #[must_use]
    pub const fn encode(&self) -> u32 {
        ((self.codec as u32 & 0xF) << 28)
            | ((self.node as u32 & 0x7F) << 20)
            | (self.payload & 0xF_FFFF)
    }

    /// Splits a command word back into its parts (the model's side).
    #[must_use]
    pub const fn decode(word: u32) -> Self {
        Self {
            codec: ((word >> 28) & 0xF) as u8,
            node: ((word >> 20) & 0x7F) as u8,
            payload: word & 0xF_FFFF,
        }
    }
}

/// Widget types (audio widget capabilities bits 23:20, HDA spec 7.3.4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WidgetType {
    /// Audio output converter (DAC side).
    Output,
    /// Audio input converter (ADC side).
    Input,
    /// Mixer.
    Mixer,
    /// Selector.
    Selector,
    /// Pin complex.
    Pin,
    /// Anything else (power, volume knob, beep, vendor).
    Other,
}

/// Audio widget capabilities (HDA spec 7.3.4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WidgetCaps(pub u32);

impl WidgetCaps {
    /// The widget's type.
    #[must_use]
    pub const fn kind(self) -> WidgetType {
        match (self.0 >> 20) & 0xF {
            0 => WidgetType::Output,
            1 => WidgetType::Input,
            2 => WidgetType::Mixer,
            3 => WidgetType::Selector,
            4 => WidgetType::Pin,
            _ => WidgetType::Other,
        }
    }
    /// Delay in sample periods through the widget (bits 19:16).
    #[must_use]
    pub const fn delay_samples(self) -> u32 {
        (self.0 >> 16) & 0xF
    }
    /// Input amplifier present (bit 1).
    #[must_use]
    pub const fn has_in_amp(self) -> bool {
        self.0 & (1 << 1) != 0
    }
    /// Output amplifier present (bit 2).
    #[must_use]
    pub const fn has_out_amp(self) -> bool {
        self.0 & (1 << 2) != 0
    }
    /// The widget has its own amplifier parameters (bit 3); else the
    /// function group's apply.
    #[must_use]
    pub const fn amp_override(self) -> bool {
        self.0 & (1 << 3) != 0
    }
    /// The widget has its own format parameters (bit 4).
    #[must_use]
    pub const fn format_override(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    /// The widget has a connection list (bit 8).
    #[must_use]
    pub const fn has_connections(self) -> bool {
        self.0 & (1 << 8) != 0
    }
    /// Channel count: bits 15:13 and bit 0 (HDA spec 7.3.4.6), plus one.
    #[must_use]
    pub const fn channels(self) -> u32 {
        (((self.0 >> 13) & 0x7) << 1 | (self.0 & 1)) + 1
    }
}

/// Amplifier capabilities (HDA spec 7.3.4.10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AmpCaps(pub u32);

impl AmpCaps {
    /// The gain value that is 0 dB (bits 6:0).
    #[must_use]
    pub const fn offset(self) -> u8 {
        // Masked to 7 bits.
        (self.0 & 0x7F) as u8
    }
    /// The highest gain value (bits 14:8); values 0..=steps are valid.
    #[must_use]
    pub const fn steps(self) -> u8 {
        ((self.0 >> 8) & 0x7F) as u8
    }
    /// One step in quarter decibels (bits 22:16 hold the size minus one).
    #[must_use]
    pub const fn step_quarter_db(self) -> u32 {
        ((self.0 >> 16) & 0x7F) + 1
    }
    /// Mute capable (bit 31).
    #[must_use]
    pub const fn can_mute(self) -> bool {
        self.0 & (1 << 31) != 0
    }
    /// The gain range in 1/65536 dB (`KSPROPERTY_AUDIO_VOLUMELEVEL`'s unit):
    /// (minimum, maximum, step).
    #[must_use]
    pub const fn range_db_fixed(self) -> (i32, i32, i32) {
        // Quarter dB to 16.16 fixed point: * 16384. At most 128 steps of
        // 32 dB, so every product fits in an i32.
        #[expect(clippy::cast_possible_wrap, reason = "at most 128")]
        let step = self.step_quarter_db() as i32 * 16_384;
        let min = -(self.offset() as i32) * step;
        let max = (self.steps() as i32 - self.offset() as i32) * step;
        (min, max, step)
    }
}

/// PCM sizes and rates a converter supports (HDA spec 7.3.4.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcmSupport(pub u32);

/// Rates in the order of the PCM parameter's bits 11:0 (HDA spec 7.3.4.7).
pub const PCM_RATES: [u32; 12] = [
    8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400, 192_000,
    384_000,
];
/// Sample sizes in the order of the PCM parameter's bits 20:16.
pub const PCM_BITS: [u16; 5] = [8, 16, 20, 24, 32];

impl PcmSupport {
    /// Whether `rate` Hz is listed.
    #[must_use]
    pub fn has_rate(self, rate: u32) -> bool {
        PCM_RATES
            .iter()
            .zip(0u32..)
            .any(|(&r, bit)| r == rate && self.0 & (1 << bit) != 0)
    }
    /// Whether `bits`-bit samples are listed.
    #[must_use]
    pub fn has_bits(self, bits: u16) -> bool {
        PCM_BITS
            .iter()
            .zip(16u32..)
            .any(|(&b, bit)| b == bits && self.0 & (1 << bit) != 0)
    }
    /// Lowest and highest listed rate.
    #[must_use]
    pub fn rate_range(self) -> Option<(u32, u32)> {
        let mut listed = PCM_RATES
            .iter()
            .zip(0u32..)
            .filter(|&(_, bit)| self.0 & (1 << bit) != 0)
            .map(|(&r, _)| r);
        let first = listed.next()?;
        Some((first, listed.last().unwrap_or(first)))
    }
}

/// A PCM stream format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcmFormat {
    /// Frames per second.
    pub rate: u32,
    /// Container bits per sample (8, 16, 20, 24 or 32).
    pub bits: u16,
    /// Channels (1..=16).
    pub channels: u16,
}

/// Rates the format word can express: (rate, base 44.1 kHz, multiplier
/// code, divisor code) (HDA spec 3.7.1, table 53).
const FORMAT_RATES: [(u32, bool, u16, u16); 11] = [
    (8_000, false, 0, 5),
    (11_025, true, 0, 3),
    (16_000, false, 0, 2),
    (22_050, true, 0, 1),
    (32_000, false, 1, 2),
    (44_100, true, 0, 0),
    (48_000, false, 0, 0),
    (88_200, true, 1, 0),
    (96_000, false, 1, 0),
    (176_400, true, 3, 0),
    (192_000, false, 3, 0),
];

impl PcmFormat {
    /// The 16-bit stream format word (HDA spec 3.7.1): type bit 15 (0 =
    /// PCM), base bit 14, multiple bits 13:11, divisor bits 10:8, bits per
    /// sample 6:4, channels minus one 3:0. The same word goes to `SDnFMT` and
    /// to the converter's format verb.
    ///
    /// # Errors
    /// [`HdaError::UnsupportedFormat`].
    pub fn encode(&self) -> Result<u16, HdaError> {
        let &(_, base44, mult, div) = FORMAT_RATES
            .iter()
            .find(|&&(rate, ..)| rate == self.rate)
            .ok_or(HdaError::UnsupportedFormat)?;
        let bits = match self.bits {
            8 => 0,
            16 => 1,
            20 => 2,
            24 => 3,
            32 => 4,
            _ => return Err(HdaError::UnsupportedFormat),
        };
        if self.channels == 0 || self.channels > 16 {
            return Err(HdaError::UnsupportedFormat);
        }
        Ok((u16::from(base44) << 14)
            | (mult << 11)
            | (div << 8)
            | (bits << 4)
            | (self.channels - 1))
    }

    /// Decodes a format word (the model's side).
    ///
    /// # Errors
    /// [`HdaError::UnsupportedFormat`] for non-PCM or reserved codes.
    pub fn decode(word: u16) -> Result<Self, HdaError> {
        if word & 0x8000 != 0 {
            return Err(HdaError::UnsupportedFormat);
        }
        let base44 = word & 0x4000 != 0;
        let mult = (word >> 11) & 0x7;
        let div = (word >> 8) & 0x7;
        let &(rate, ..) = FORMAT_RATES
            .iter()
            .find(|&&(_, b, m, d)| b == base44 && m == mult && d == div)
            .ok_or(HdaError::UnsupportedFormat)?;
        let bits = match (word >> 4) & 0x7 {
            0 => 8,
            1 => 16,
            2 => 20,
            3 => 24,
            4 => 32,
            _ => return Err(HdaError::UnsupportedFormat),
        };
        Ok(Self {
            rate,
            bits,
            channels: (word & 0xF) + 1,
        })
    }
}

/// Most connections kept per widget.
pub const MAX_CONNECTIONS: usize = 8;
/// Most converters or pins of one kind kept by the walk.
pub const MAX_WIDGETS: usize = 16;

/// One converter the walk found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Converter {
    /// Node id.
    pub node: u8,
    /// Capabilities.
    pub caps: u32,
    /// Supported sizes and rates (its own, or the function group's).
    pub pcm: PcmSupport,
    /// Its amplifier (output amp of a DAC, input amp of an ADC), if any.
    pub amp: Option<AmpCaps>,
    /// Connections (node ids), for input converters.
    pub connections: [u8; MAX_CONNECTIONS],
    /// How many of `connections` are valid.
    pub connection_count: u8,
}

/// One pin complex the walk found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pin {
    /// Node id.
    pub node: u8,
    /// Widget capabilities.
    pub caps: u32,
    /// Pin capabilities (HDA spec 7.3.4.9: output bit 4, input bit 5).
    pub pin_caps: u32,
    /// Configuration default (HDA spec 7.3.3.31).
    pub config_default: u32,
    /// Connections (node ids).
    pub connections: [u8; MAX_CONNECTIONS],
    /// How many of `connections` are valid.
    pub connection_count: u8,
}

impl Pin {
    /// Output capable.
    #[must_use]
    pub const fn can_output(&self) -> bool {
        self.pin_caps & (1 << 4) != 0
    }
    /// Input capable.
    #[must_use]
    pub const fn can_input(&self) -> bool {
        self.pin_caps & (1 << 5) != 0
    }
    /// Port connectivity (bits 31:30): 1 means nothing is attached.
    #[must_use]
    pub const fn is_connected(&self) -> bool {
        (self.config_default >> 30) != 1
    }
    /// Default device (bits 23:20): 0 line out, 1 speaker, 2 headphone,
    /// 8 line in, 0xA microphone, ...
    #[must_use]
    pub const fn default_device(&self) -> u8 {
        ((self.config_default >> 20) & 0xF) as u8
    }
    /// Colour (bits 15:12): 4 green, 5 red, ...
    #[must_use]
    pub const fn color(&self) -> u8 {
        ((self.config_default >> 12) & 0xF) as u8
    }
    fn connects_to(&self, node: u8) -> bool {
        self.connections
            .iter()
            .take(usize::from(self.connection_count))
            .any(|&n| n == node)
    }
}

/// A converter and the pin it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioPath {
    /// The converter.
    pub converter: Converter,
    /// The pin.
    pub pin: Pin,
}

impl AudioPath {
    /// Sample periods of delay through the converter and the pin (the
    /// widget capabilities' delay fields: HDA spec 7.3.4.6).
    #[must_use]
    pub const fn delay_samples(&self) -> u32 {
        WidgetCaps(self.converter.caps).delay_samples() + WidgetCaps(self.pin.caps).delay_samples()
    }
}

/// What the walk found on one codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodecInfo {
    /// Codec address.
    pub address: u8,
    /// Vendor and device id.
    pub vendor_id: u32,
    /// The audio function group's node id.
    pub function_group: u8,
    /// The render path, if any.
    pub render: Option<AudioPath>,
    /// The capture path, if any.
    pub capture: Option<AudioPath>,
}

/// Fixed-capacity list (no allocation: the walk may run at PASSIVE level
/// but the type is shared with code that may not).
struct Found<T: Copy + Default> {
    items: [T; MAX_WIDGETS],
    len: usize,
}

impl<T: Copy + Default> Found<T> {
    fn new() -> Self {
        Self {
            items: [T::default(); MAX_WIDGETS],
            len: 0,
        }
    }
    fn push(&mut self, item: T) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = item;
            self.len += 1;
        }
    }
    fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().take(self.len)
    }
}

/// Node range of a `NODE_COUNT` response: (start, count).
const fn node_range(response: u32) -> (u32, u32) {
    ((response >> 16) & 0xFF, response & 0xFF)
}

/// Reads up to [`MAX_CONNECTIONS`] entries of `node`'s connection list
/// (HDA spec 7.3.3.3), expanding ranges of the short form.
///
/// # Errors
/// A verb's error.
pub fn read_connections(
    send: &mut impl FnMut(Verb) -> Result<u32, HdaError>,
    codec: u8,
    node: u8,
    out: &mut [u8; MAX_CONNECTIONS],
) -> Result<u8, HdaError> {
    let length_word = send(Verb::get_parameter(
        codec,
        node,
        param::CONNECTION_LIST_LENGTH,
    ))?;
    let long_form = length_word & 0x80 != 0;
    let length = length_word & 0x7F;
    let per_response = if long_form { 2 } else { 4 };
    let (width, mask, range_bit) = if long_form {
        (16, 0x7FFF, 0x8000)
    } else {
        (8, 0x7F, 0x80)
    };
    let mut count = 0usize;
    let mut previous: Option<u32> = None;
    let mut index = 0u32;
    while index < length && count < MAX_CONNECTIONS {
        #[expect(clippy::cast_possible_truncation, reason = "index < 128")]
        let response = send(Verb::long_id(
            codec,
            node,
            id::GET_CONNECTION_LIST,
            index as u8,
        ))?;
        for slot in 0..per_response {
            if index >= length || count >= MAX_CONNECTIONS {
                break;
            }
            let raw = (response >> (slot * width)) & ((1 << width) - 1);
            let entry = raw & mask;
            let first = match (raw & range_bit != 0, previous) {
                (true, Some(p)) => p + 1,
                _ => entry,
            };
            // A range entry may span thousands of nodes; only the first
            // MAX_CONNECTIONS are kept, so stop there.
            for n in first..=entry {
                let (Some(dst), Ok(n)) = (out.get_mut(count), u8::try_from(n)) else {
                    break;
                };
                *dst = n;
                count += 1;
            }
            previous = Some(entry);
            index += 1;
        }
    }
    #[expect(clippy::cast_possible_truncation, reason = "at most MAX_CONNECTIONS")]
    Ok(count.min(MAX_CONNECTIONS) as u8)
}

/// The function group's parameters, which apply to widgets without their
/// own (HDA spec 7.3.4.6, format and amplifier override bits).
struct GroupDefaults {
    pcm: PcmSupport,
    amp_out: AmpCaps,
    amp_in: AmpCaps,
}

/// A widget the walk keeps.
enum Widget {
    Converter { output: bool, converter: Converter },
    Pin(Pin),
}

/// Reads one widget's capabilities and, for converters and pins, the
/// parameters the paths need.
fn read_widget(
    codec: u8,
    node: u8,
    defaults: &GroupDefaults,
    send: &mut impl FnMut(Verb) -> Result<u32, HdaError>,
) -> Result<Option<Widget>, HdaError> {
    let caps_word = send(Verb::get_parameter(codec, node, param::AUDIO_WIDGET_CAP))?;
    let caps = WidgetCaps(caps_word);
    match caps.kind() {
        kind @ (WidgetType::Output | WidgetType::Input) => {
            let output = kind == WidgetType::Output;
            let pcm = if caps.format_override() {
                PcmSupport(send(Verb::get_parameter(codec, node, param::PCM))?)
            } else {
                defaults.pcm
            };
            let present = if output {
                caps.has_out_amp()
            } else {
                caps.has_in_amp()
            };
            let amp = if !present {
                None
            } else if caps.amp_override() {
                let id = if output {
                    param::AMP_OUT_CAP
                } else {
                    param::AMP_IN_CAP
                };
                Some(AmpCaps(send(Verb::get_parameter(codec, node, id))?))
            } else if output {
                Some(defaults.amp_out)
            } else {
                Some(defaults.amp_in)
            };
            let mut converter = Converter {
                node,
                caps: caps_word,
                pcm,
                amp,
                ..Converter::default()
            };
            if caps.has_connections() {
                converter.connection_count =
                    read_connections(send, codec, node, &mut converter.connections)?;
            }
            Ok(Some(Widget::Converter { output, converter }))
        }
        WidgetType::Pin => {
            let mut pin = Pin {
                node,
                caps: caps_word,
                pin_caps: send(Verb::get_parameter(codec, node, param::PIN_CAP))?,
                config_default: send(Verb::long_id(codec, node, id::GET_CONFIG_DEFAULT, 0))?,
                ..Pin::default()
            };
            if caps.has_connections() {
                pin.connection_count = read_connections(send, codec, node, &mut pin.connections)?;
            }
            Ok(Some(Widget::Pin(pin)))
        }
        WidgetType::Mixer | WidgetType::Selector | WidgetType::Other => Ok(None),
    }
}

/// Walks codec `codec` to its render and capture paths.
///
/// Root node, its audio function group, every widget
/// of it; returns the first output converter an output-capable, connected
/// pin lists in its connections (render), and the first input converter
/// that lists an input-capable pin (capture). `send` delivers one verb
/// and returns its response.
///
/// Only direct converter-pin connections are followed (QEMU's codecs have
/// no mixers or selectors); a codec whose paths go through them reports
/// [`HdaError::NoPath`].
///
/// # Errors
/// [`HdaError::NoAudioFunction`], [`HdaError::NoPath`], or a verb's error.
pub fn walk(
    codec: u8,
    send: &mut impl FnMut(Verb) -> Result<u32, HdaError>,
) -> Result<CodecInfo, HdaError> {
    let vendor_id = send(Verb::get_parameter(codec, 0, param::VENDOR_ID))?;
    let (fg_start, fg_count) = node_range(send(Verb::get_parameter(codec, 0, param::NODE_COUNT))?);
    let mut function_group = None;
    for node in fg_start..fg_start + fg_count {
        let Ok(node) = u8::try_from(node) else { break };
        if send(Verb::get_parameter(codec, node, param::FUNCTION_TYPE))? & 0xFF == 1 {
            function_group = Some(node);
            break;
        }
    }
    let afg = function_group.ok_or(HdaError::NoAudioFunction)?;
    let afg_pcm = PcmSupport(send(Verb::get_parameter(codec, afg, param::PCM))?);
    let afg_amp_out = AmpCaps(send(Verb::get_parameter(codec, afg, param::AMP_OUT_CAP))?);
    let afg_amp_in = AmpCaps(send(Verb::get_parameter(codec, afg, param::AMP_IN_CAP))?);
    let (start, count) = node_range(send(Verb::get_parameter(codec, afg, param::NODE_COUNT))?);
    let defaults = GroupDefaults {
        pcm: afg_pcm,
        amp_out: afg_amp_out,
        amp_in: afg_amp_in,
    };
    let mut outputs: Found<Converter> = Found::new();
    let mut inputs: Found<Converter> = Found::new();
    let mut pins: Found<Pin> = Found::new();
    for node in start..start + count {
        let Ok(node) = u8::try_from(node) else { break };
        match read_widget(codec, node, &defaults, send)? {
            Some(Widget::Converter {
                output: true,
                converter,
            }) => outputs.push(converter),
            Some(Widget::Converter {
                output: false,
                converter,
            }) => inputs.push(converter),
            Some(Widget::Pin(pin)) => pins.push(pin),
            None => {}
        }
    }
    let render = pins
        .iter()
        .filter(|p| p.can_output() && p.is_connected())
        .find_map(|pin| {
            outputs
                .iter()
                .find(|c| pin.connects_to(c.node))
                .map(|c| AudioPath {
                    converter: *c,
                    pin: *pin,
                })
        });
    let capture = inputs.iter().find_map(|converter| {
        pins.iter()
            .filter(|p| p.can_input() && p.is_connected())
            .find(|p| {
                converter
                    .connections
                    .iter()
                    .take(usize::from(converter.connection_count))
                    .any(|&n| n == p.node)
            })
            .map(|pin| AudioPath {
                converter: *converter,
                pin: *pin,
            })
    });
    if render.is_none() && capture.is_none() {
        return Err(HdaError::NoPath);
    }
    Ok(CodecInfo {
        address: codec,
        vendor_id,
        function_group: afg,
        render,
        capture,
    })
}

/// The verbs that open a path for a stream.
///
/// They power the function group, the
/// converter and the pin to D0, enable the pin, set the converter's stream
/// tag (channel 0) and format, and set its amplifier to 0 dB, unmuted (the
/// controller's `SDnFMT` is not what the converter uses: QEMU's model reads
/// only the converter's format verb, hda-codec.c). Returns how many verbs
/// `out` holds.
///
/// # Errors
/// [`HdaError::BadStreamTag`], or as [`PcmFormat::encode`]; also
/// [`HdaError::UnsupportedFormat`] if the converter does not list the rate
/// or sample size.
pub fn path_setup_verbs(
    info: &CodecInfo,
    path: &AudioPath,
    output: bool,
    stream_tag: u8,
    format: &PcmFormat,
    out: &mut [Verb; 7],
) -> Result<usize, HdaError> {
    if stream_tag == 0 || stream_tag > 15 {
        return Err(HdaError::BadStreamTag(stream_tag));
    }
    if !path.converter.pcm.has_rate(format.rate) || !path.converter.pcm.has_bits(format.bits) {
        return Err(HdaError::UnsupportedFormat);
    }
    let word = format.encode()?;
    let codec = info.address;
    let converter = path.converter.node;
    let pin_control = if output {
        id::PIN_OUT_ENABLE
    } else {
        id::PIN_IN_ENABLE
    };
    let amp_payload = path.converter.amp.map_or(0, |amp| {
        let side = if output {
            id::AMP_SET_OUTPUT
        } else {
            id::AMP_SET_INPUT
        };
        side | id::AMP_SET_LEFT | id::AMP_SET_RIGHT | u16::from(amp.offset())
    });
    *out = [
        Verb::long_id(codec, info.function_group, id::SET_POWER_STATE, 0),
        Verb::long_id(codec, converter, id::SET_POWER_STATE, 0),
        Verb::long_id(codec, path.pin.node, id::SET_POWER_STATE, 0),
        Verb::long_id(codec, path.pin.node, id::SET_PIN_CONTROL, pin_control),
        Verb::short_id(codec, converter, id::SET_CONVERTER_FORMAT, word),
        Verb::long_id(codec, converter, id::SET_CONVERTER_STREAM, stream_tag << 4),
        Verb::short_id(codec, converter, id::SET_AMP_GAIN_MUTE, amp_payload),
    ];
    Ok(if path.converter.amp.is_some() { 7 } else { 6 })
}

/// The verb that detaches a converter from its stream (stream tag 0).
#[must_use]
pub const fn path_release_verb(info: &CodecInfo, path: &AudioPath) -> Verb {
    Verb::long_id(
        info.address,
        path.converter.node,
        id::SET_CONVERTER_STREAM,
        0,
    )
}
