//! The KS topology rules of the HLK audio tests, applied through [`crate::ks`].
//!
//! The rules of the HLK's KS topology and audio property checks, so a
//! handler that answers them wrongly fails here and not in an HLK job.
//!
//! Written from the documented contracts, not from Microsoft's test code:
//!
//! * Basic support of every channel property (Learn, "Exposing Multichannel
//!   Nodes", `KSPROPERTY_AUDIO_VOLUMELEVEL`, `KSPROPERTY_AUDIO_MUTE`,
//!   "Basic Support Queries for Audio Properties"): a 0-byte query gets the
//!   full size with `STATUS_BUFFER_OVERFLOW`, a `ULONG` gets the access
//!   flags, a `KSPROPERTY_DESCRIPTION` gets the description whose
//!   `DescriptionSize` is the full size, and the full buffer adds a members
//!   header with `KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL`,
//!   `MembersCount` = the node's channels (the endpoint's) and one stepped
//!   range per channel, each a whole number of steps.
//! * GET and SET round trips on every channel and on the master channel
//!   (-1); a level past either end is clamped into the range (or refused,
//!   and then nothing changes); a level between steps lands on a step; a
//!   channel past the last is `STATUS_INVALID_PARAMETER`.
//! * Peak meters (`KSNODETYPE_PEAKMETER`, Learn's
//!   `KSPROPERTY_AUDIO_PEAKMETER2` page): read only (GET and basic support,
//!   no SET), one range per channel bounded by `LONG_MIN` and `LONG_MAX`; a
//!   GET of every channel answers a `LONG` in `0..=LONG_MAX`; a SET, the
//!   master channel and a channel past the last are refused. What the meter
//!   reads while audio plays is the main job's and the cable tests' to
//!   check ([`read_peak_meter`]): the level depends on the signal.
//! * Jacks: `KSPROPERTY_JACK_DESCRIPTION` and `_DESCRIPTION2` answer on the
//!   filter, with a `KSP_PIN`, for every endpoint bridge pin (category
//!   other than `KSCATEGORY_AUDIO`): one `KSJACK_DESCRIPTION` with a channel
//!   mapping, connected when the jack cannot detect presence
//!   (`KSJACK_DESCRIPTION2`); a pin without a jack answers
//!   `STATUS_INVALID_DEVICE_REQUEST` (what the samples' handlers answer).
//!
//! Every rule restores the values it changed.

use std::mem::{offset_of, size_of};

use portcls_sys::{
    KSPROPSETID_Audio, KSPROPSETID_Jack, KSPROPTYPESETID_General, GUID, KSCATEGORY_AUDIO,
    KSDATARANGE_AUDIO, KSJACK_DESCRIPTION, KSJACK_DESCRIPTION2, KSMULTIPLE_ITEM, KSNODETYPE_MUTE,
    KSNODETYPE_PEAKMETER, KSNODETYPE_VOLUME, KSPROPERTY_AUDIO_MUTE, KSPROPERTY_AUDIO_PEAKMETER2,
    KSPROPERTY_AUDIO_VOLUMELEVEL, KSPROPERTY_DESCRIPTION, KSPROPERTY_JACK_DESCRIPTION,
    KSPROPERTY_JACK_DESCRIPTION2, KSPROPERTY_MEMBERSHEADER,
    KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL, KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM,
    KSPROPERTY_MEMBER_STEPPEDRANGES, KSPROPERTY_STEPPING_LONG, KSPROPERTY_TYPE_BASICSUPPORT,
    KSPROPERTY_TYPE_GET, KSPROPERTY_TYPE_SET, NTSTATUS, PCFILTER_DESCRIPTOR,
    STATUS_BUFFER_OVERFLOW, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    STATUS_NOT_FOUND, STATUS_SUCCESS, VARENUM, VT_BOOL, VT_I4,
};
use zerocopy::FromBytes;

use crate::engine::{data_ranges, pins};
use crate::hlk::Finding;
use crate::ks::{channel_instance, nodes, pin_instance, KsFilter, Property, Target};

/// `JACKDESC2_PRESENCE_DETECT_CAPABILITY` (ksmedia.h): the jack reports
/// insertion; without it `IsConnected` must be TRUE.
const JACKDESC2_PRESENCE_DETECT_CAPABILITY: u32 = 0x1;
/// The master channel of a channel property.
const MASTER: i32 = -1;

const DESCRIPTION: usize = size_of::<KSPROPERTY_DESCRIPTION>();
const HEADER: usize = size_of::<KSPROPERTY_MEMBERSHEADER>();
const STEPPING: usize = size_of::<KSPROPERTY_STEPPING_LONG>();

/// What a channel node's basic support says.
#[derive(Clone, Copy, Debug)]
struct ChannelSupport {
    channels: usize,
    uniform: bool,
    /// The first channel's range (the rules also check every other one).
    range: KSPROPERTY_STEPPING_LONG,
}

const fn finding(rule: String, outcome: Result<(), String>) -> Finding {
    Finding { rule, outcome }
}

/// A channel property of `node` (`KSPROPERTY_AUDIO_VOLUMELEVEL` or `_MUTE`).
struct ChannelProperty<'a> {
    filter: &'a KsFilter,
    node: u32,
    id: u32,
}

impl ChannelProperty<'_> {
    const fn property(&self, verb: u32) -> Property {
        Property {
            set: KSPROPSETID_Audio,
            id: self.id,
            verb,
            target: Target::Node(self.node),
        }
    }

    fn get(&self, channel: i32) -> Result<i32, String> {
        let mut value = [0xA5u8; 4];
        let reply = self.filter.request(
            &self.property(KSPROPERTY_TYPE_GET),
            &channel_instance(channel),
            &mut value,
        );
        if reply.status != STATUS_SUCCESS || reply.value_size != 4 {
            return Err(format!(
                "GET channel {channel}: status {:#010x}, {} bytes",
                reply.status, reply.value_size
            ));
        }
        Ok(i32::from_le_bytes(value))
    }

    fn set(&self, channel: i32, value: i32) -> NTSTATUS {
        let mut bytes = value.to_le_bytes();
        self.filter
            .request(
                &self.property(KSPROPERTY_TYPE_SET),
                &channel_instance(channel),
                &mut bytes,
            )
            .status
    }

    fn set_ok(&self, channel: i32, value: i32) -> Result<(), String> {
        match self.set(channel, value) {
            STATUS_SUCCESS => Ok(()),
            status => Err(format!(
                "SET channel {channel} to {value}: status {status:#010x}"
            )),
        }
    }

    /// Basic support at every buffer size, checked, for a property with
    /// the access flags `access` (GET and SET, or GET only); the parsed
    /// answer. Each range must be a whole number of steps when
    /// `whole_steps` (a setting's range; a meter's `LONG_MIN..=LONG_MAX` is
    /// not one).
    fn basic_support(
        &self,
        vt: VARENUM,
        expected_channels: usize,
        access_wanted: u32,
        whole_steps: bool,
    ) -> Result<ChannelSupport, String> {
        let verb = self.property(KSPROPERTY_TYPE_BASICSUPPORT);
        let instance = channel_instance(0);
        let size = self.filter.request(&verb, &instance, &mut []);
        if size.status != STATUS_BUFFER_OVERFLOW {
            return Err(format!(
                "0-byte query: status {:#010x}, not STATUS_BUFFER_OVERFLOW",
                size.status
            ));
        }
        let full = size.value_size as usize;
        let mut access = [0u8; 4];
        let reply = self.filter.request(&verb, &instance, &mut access);
        if reply.status != STATUS_SUCCESS || reply.value_size != 4 {
            return Err(format!(
                "ULONG query: status {:#010x}, {} bytes",
                reply.status, reply.value_size
            ));
        }
        let access = u32::from_le_bytes(access);
        let settable = KSPROPERTY_TYPE_GET | KSPROPERTY_TYPE_SET;
        if access & settable != access_wanted {
            return Err(format!(
                "access flags {access:#x}: GET/SET should be {access_wanted:#x}"
            ));
        }
        let mut bytes = vec![0u8; full.max(DESCRIPTION) + 64];
        let reply = self
            .filter
            .request(&verb, &instance, &mut bytes[..DESCRIPTION]);
        if reply.status != STATUS_SUCCESS || reply.value_size as usize != DESCRIPTION {
            return Err(format!(
                "description query: status {:#010x}, {} bytes",
                reply.status, reply.value_size
            ));
        }
        let reply = self.filter.request(&verb, &instance, &mut bytes);
        if reply.status != STATUS_SUCCESS || reply.value_size as usize != full {
            return Err(format!(
                "full query: status {:#010x}, {} bytes, {full} announced",
                reply.status, reply.value_size
            ));
        }
        let (description, rest) = KSPROPERTY_DESCRIPTION::read_from_prefix(&bytes)
            .map_err(|_| "short description".to_owned())?;
        if description.DescriptionSize as usize != full
            || description.PropTypeSet.Set != KSPROPTYPESETID_General
            || description.PropTypeSet.Id != vt
            || description.MembersListCount != 1
            || description.AccessFlags != access
        {
            return Err(format!(
                "description {description:?} (full size {full}, type {vt})"
            ));
        }
        let (header, mut rest) = KSPROPERTY_MEMBERSHEADER::read_from_prefix(rest)
            .map_err(|_| "no members header".to_owned())?;
        let channels = header.MembersCount as usize;
        if header.MembersFlags != KSPROPERTY_MEMBER_STEPPEDRANGES
            || header.MembersSize as usize != STEPPING
            || header.Flags & KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL == 0
        {
            return Err(format!(
                "members header {header:?}: want stepped ranges of {STEPPING} bytes, MULTICHANNEL"
            ));
        }
        if channels != expected_channels {
            return Err(format!(
                "{channels} channels, the endpoint has {expected_channels}"
            ));
        }
        if full != DESCRIPTION + HEADER + channels * STEPPING {
            return Err(format!("{full} bytes for {channels} ranges"));
        }
        let mut first = None;
        for channel in 0..channels {
            let (range, after) = KSPROPERTY_STEPPING_LONG::read_from_prefix(rest)
                .map_err(|_| format!("no range for channel {channel}"))?;
            rest = after;
            let (min, max) = (range.Bounds.SignedMinimum, range.Bounds.SignedMaximum);
            let span = i64::from(max) - i64::from(min);
            let delta = i64::from(range.SteppingDelta);
            if range.SteppingDelta == 0 || span < 0 || (whole_steps && span % delta != 0) {
                return Err(format!(
                    "channel {channel}: {min}..={max} by {} is not a whole number of steps",
                    range.SteppingDelta
                ));
            }
            first.get_or_insert(range);
        }
        Ok(ChannelSupport {
            channels,
            uniform: header.Flags & KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM != 0,
            range: first.ok_or_else(|| "no channels".to_owned())?,
        })
    }
}

/// Every channel's value, to restore after a rule.
fn snapshot(property: &ChannelProperty<'_>, channels: usize) -> Result<Vec<i32>, String> {
    (0..channels)
        .map(|c| property.get(i32::try_from(c).unwrap_or(i32::MAX)))
        .collect()
}

fn restore(property: &ChannelProperty<'_>, values: &[i32]) {
    for (channel, &value) in values.iter().enumerate() {
        let _ = property.set(i32::try_from(channel).unwrap_or(i32::MAX), value);
    }
}

fn channel(index: usize) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// Volume: every channel and the master take the range ends and a middle
/// step; channels are independent unless UNIFORM; values past the ends are
/// clamped (or refused, changing nothing); values between steps land on a
/// step; a channel past the last is refused.
fn volume_round_trips(
    property: &ChannelProperty<'_>,
    support: &ChannelSupport,
) -> Result<(), String> {
    let range = support.range;
    let (min, max, step) = (
        range.Bounds.SignedMinimum,
        range.Bounds.SignedMaximum,
        i32::try_from(range.SteppingDelta).map_err(|_| "step past i32".to_owned())?,
    );
    let steps = (i64::from(max) - i64::from(min)) / i64::from(step);
    let middle = min + step * i32::try_from(steps / 2).unwrap_or(0);
    for c in 0..support.channels {
        for level in [min, max, middle] {
            property.set_ok(channel(c), level)?;
            let got = property.get(channel(c))?;
            if got != level {
                return Err(format!("channel {c}: SET {level}, GET {got}"));
            }
        }
    }
    if !support.uniform && support.channels > 1 {
        property.set_ok(MASTER, max)?;
        property.set_ok(0, min)?;
        let other = property.get(1)?;
        if other != max {
            return Err(format!(
                "SET channel 0 changed channel 1 to {other} (no UNIFORM flag)"
            ));
        }
    }
    property.set_ok(MASTER, middle)?;
    for c in 0..support.channels {
        let got = property.get(channel(c))?;
        if got != middle {
            return Err(format!("master SET {middle}, channel {c} GET {got}"));
        }
    }
    for (outside, end) in [
        (max.saturating_add(step), max),
        (min.saturating_sub(step), min),
    ] {
        property.set_ok(0, middle)?;
        let status = property.set(0, outside);
        let got = property.get(0)?;
        let fine = (status == STATUS_SUCCESS && got == end)
            || (status == STATUS_INVALID_PARAMETER && got == middle);
        if !fine {
            return Err(format!(
                "SET {outside} (outside {min}..={max}): status {status:#010x}, GET {got}"
            ));
        }
    }
    if step > 1 {
        property.set_ok(0, middle + step / 2)?;
        let got = property.get(0)?;
        if !(min..=max).contains(&got) || (got - min) % step != 0 {
            return Err(format!("SET between steps gave {got}, not a step"));
        }
    }
    channel_bounds(property, support.channels)
}

/// Mute: TRUE and FALSE round trip on every channel and the master.
fn mute_round_trips(
    property: &ChannelProperty<'_>,
    support: &ChannelSupport,
) -> Result<(), String> {
    for state in [1, 0] {
        for target in (0..support.channels).map(channel).chain([MASTER]) {
            property.set_ok(target, state)?;
            let got = property.get(target)?;
            if (got != 0) != (state != 0) {
                return Err(format!("channel {target}: SET {state}, GET {got}"));
            }
        }
    }
    channel_bounds(property, support.channels)
}

fn channel_bounds(property: &ChannelProperty<'_>, channels: usize) -> Result<(), String> {
    let mut value = [0u8; 4];
    let past = property.filter.request(
        &property.property(KSPROPERTY_TYPE_GET),
        &channel_instance(channel(channels)),
        &mut value,
    );
    if past.status != STATUS_INVALID_PARAMETER {
        return Err(format!(
            "GET channel {channels} (past the last): status {:#010x}",
            past.status
        ));
    }
    Ok(())
}

/// Peak meter: `LONG_MIN..=LONG_MAX` on every channel; every channel reads
/// a magnitude; SET, the master channel and a channel past the last are
/// refused.
fn peak_meter_reads(
    property: &ChannelProperty<'_>,
    support: &ChannelSupport,
) -> Result<(), String> {
    let bounds = support.range.Bounds;
    if (bounds.SignedMinimum, bounds.SignedMaximum) != (i32::MIN, i32::MAX) {
        return Err(format!(
            "range {}..={}, not LONG_MIN..=LONG_MAX",
            bounds.SignedMinimum, bounds.SignedMaximum
        ));
    }
    for c in 0..support.channels {
        let level = property.get(channel(c))?;
        if level < 0 {
            return Err(format!("channel {c} reads {level}, not a magnitude"));
        }
    }
    let status = property.set(0, 0);
    if status == STATUS_SUCCESS {
        return Err("a SET of the meter succeeded".to_owned());
    }
    let mut value = [0u8; 4];
    let master = property.filter.request(
        &property.property(KSPROPERTY_TYPE_GET),
        &channel_instance(MASTER),
        &mut value,
    );
    if master.status == STATUS_SUCCESS {
        return Err("GET of the master channel succeeded: a meter has no master peak".to_owned());
    }
    channel_bounds(property, support.channels)
}

/// Reads (and so resets) channel `channel` of `filter`'s peak meter, as
/// sound settings' level bar does.
///
/// # Errors
///
/// No peak-meter node, or the GET failed.
pub fn read_peak_meter(filter: &KsFilter, channel: usize) -> Result<i32, String> {
    let node = node_of_type(filter, &KSNODETYPE_PEAKMETER).ok_or("no peak-meter node")?;
    ChannelProperty {
        filter,
        node,
        id: KSPROPERTY_AUDIO_PEAKMETER2,
    }
    .get(self::channel(channel))
}

/// Whether `filter` has a peak-meter node.
#[must_use]
pub fn has_peak_meter(filter: &KsFilter) -> bool {
    node_of_type(filter, &KSNODETYPE_PEAKMETER).is_some()
}

/// The jack description list of `pin`, or its refusal status.
fn jack_list<T: FromBytes>(filter: &KsFilter, pin: u32, id: u32) -> Result<T, String> {
    let property = Property {
        set: KSPROPSETID_Jack,
        id,
        verb: KSPROPERTY_TYPE_GET,
        target: Target::Filter,
    };
    let instance = pin_instance(pin);
    let want = size_of::<KSMULTIPLE_ITEM>() + size_of::<T>();
    let size = filter.request(&property, &instance, &mut []);
    if size.status != STATUS_BUFFER_OVERFLOW || size.value_size as usize != want {
        return Err(format!(
            "pin {pin} size query: status {:#010x}, {} bytes, want {want}",
            size.status, size.value_size
        ));
    }
    let mut bytes = vec![0u8; want + 16];
    let reply = filter.request(&property, &instance, &mut bytes);
    if reply.status != STATUS_SUCCESS || reply.value_size as usize != want {
        return Err(format!(
            "pin {pin}: status {:#010x}, {} bytes",
            reply.status, reply.value_size
        ));
    }
    let (header, rest) =
        KSMULTIPLE_ITEM::read_from_prefix(&bytes).map_err(|_| "short list".to_owned())?;
    if header.Size as usize != want || header.Count != 1 {
        return Err(format!(
            "pin {pin}: list header {header:?}, want one item of {want} bytes"
        ));
    }
    T::read_from_prefix(rest)
        .map(|(item, _)| item)
        .map_err(|_| "short item".to_owned())
}

fn jack_rules(filter: &KsFilter, pin: u32) -> Result<(), String> {
    let jack: KSJACK_DESCRIPTION = jack_list(filter, pin, KSPROPERTY_JACK_DESCRIPTION)?;
    let jack2: KSJACK_DESCRIPTION2 = jack_list(filter, pin, KSPROPERTY_JACK_DESCRIPTION2)?;
    if jack.ChannelMapping == 0 {
        return Err(format!("pin {pin}: jack maps no channel"));
    }
    if jack2.JackCapabilities & JACKDESC2_PRESENCE_DETECT_CAPABILITY == 0 && jack.IsConnected == 0 {
        return Err(format!(
            "pin {pin}: no presence detection, yet IsConnected is FALSE"
        ));
    }
    Ok(())
}

fn no_jack(filter: &KsFilter, pin: u32) -> Result<(), String> {
    let property = Property {
        set: KSPROPSETID_Jack,
        id: KSPROPERTY_JACK_DESCRIPTION,
        verb: KSPROPERTY_TYPE_GET,
        target: Target::Filter,
    };
    let reply = filter.request(&property, &pin_instance(pin), &mut [0u8; 64]);
    // The handler's refusal, or the port's when the filter has no jack
    // property at all.
    if reply.status == STATUS_INVALID_DEVICE_REQUEST || reply.status == STATUS_NOT_FOUND {
        Ok(())
    } else {
        Err(format!(
            "pin {pin} has no jack, yet answers status {:#010x}",
            reply.status
        ))
    }
}

/// Whether the filter's own table lists (`set`, `id`).
fn filter_lists(filter: &KsFilter, set: &GUID, id: u32) -> bool {
    filter.filter_items().iter().any(|item| {
        // SAFETY: item sets point at the miniport's static GUIDs (or are null).
        item.Id == id && unsafe { item.Set.as_ref() } == Some(set)
    })
}

/// The first node of `filter` of type `kind`, by id.
fn node_of_type(filter: &KsFilter, kind: &GUID) -> Option<u32> {
    nodes(filter.description())
        .iter()
        // SAFETY: node types point at the miniport's static GUIDs (or are null).
        .position(|node| unsafe { node.Type.as_ref() } == Some(kind))
        .and_then(|index| u32::try_from(index).ok())
}

/// Sets `filter`'s volume node as the audio engine does when the slider
/// moves, and reads back the level the node holds.
///
/// `channel` -1 is every channel; `level` is in 1/65536 dB; the answer is
/// the level snapped to the node's steps (channel 0's for every channel).
///
/// # Errors
///
/// No volume node, or the SET or GET failed.
pub fn set_volume(filter: &KsFilter, channel: i32, level: i32) -> Result<i32, String> {
    let node = node_of_type(filter, &KSNODETYPE_VOLUME).ok_or("no volume node")?;
    let property = ChannelProperty {
        filter,
        node,
        id: KSPROPERTY_AUDIO_VOLUMELEVEL,
    };
    property.set_ok(channel, level)?;
    property.get(channel.max(0))
}

/// Sets `filter`'s mute node (every channel).
///
/// # Errors
///
/// No mute node, or the SET failed.
pub fn set_mute(filter: &KsFilter, muted: bool) -> Result<(), String> {
    let node = node_of_type(filter, &KSNODETYPE_MUTE).ok_or("no mute node")?;
    ChannelProperty {
        filter,
        node,
        id: KSPROPERTY_AUDIO_MUTE,
    }
    .set_ok(-1, i32::from(muted))
}

/// The KS topology rules on `filter`, whose endpoint has `channels`
/// channels (its wave filter's host pin's most). One finding per rule.
#[must_use]
pub fn check_topology_filter(filter: &KsFilter, channels: usize) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (index, node) in nodes(filter.description()).iter().enumerate() {
        let node_id = u32::try_from(index).unwrap_or(u32::MAX);
        // SAFETY: node types point at the miniport's static GUIDs (or are null).
        let kind = unsafe { node.Type.as_ref() };
        let settable = KSPROPERTY_TYPE_GET | KSPROPERTY_TYPE_SET;
        let (id, vt, name, access) = match kind {
            Some(kind) if *kind == KSNODETYPE_VOLUME => {
                (KSPROPERTY_AUDIO_VOLUMELEVEL, VT_I4, "volume", settable)
            }
            Some(kind) if *kind == KSNODETYPE_MUTE => {
                (KSPROPERTY_AUDIO_MUTE, VT_BOOL, "mute", settable)
            }
            Some(kind) if *kind == KSNODETYPE_PEAKMETER => (
                KSPROPERTY_AUDIO_PEAKMETER2,
                VT_I4,
                "peak meter",
                KSPROPERTY_TYPE_GET,
            ),
            _ => continue,
        };
        let property = ChannelProperty {
            filter,
            node: node_id,
            id,
        };
        findings.push(finding(
            format!("node {node_id} {name} named"),
            if node.Name.is_null() {
                Err("no KSAUDFNAME".to_owned())
            } else {
                Ok(())
            },
        ));
        let support = property.basic_support(vt, channels, access, access == settable);
        let rule = format!("node {node_id} {name} basic support");
        let support = match support {
            Ok(support) => {
                findings.push(finding(rule, Ok(())));
                support
            }
            Err(e) => {
                findings.push(finding(rule, Err(e)));
                continue;
            }
        };
        if id == KSPROPERTY_AUDIO_PEAKMETER2 {
            findings.push(finding(
                format!("node {node_id} {name} reads every channel, refuses SET"),
                peak_meter_reads(&property, &support),
            ));
            continue;
        }
        let saved = snapshot(&property, support.channels);
        let outcome = saved.clone().and_then(|_| {
            if id == KSPROPERTY_AUDIO_VOLUMELEVEL {
                volume_round_trips(&property, &support)
            } else {
                mute_round_trips(&property, &support)
            }
        });
        if let Ok(values) = &saved {
            restore(&property, values);
        }
        findings.push(finding(
            format!("node {node_id} {name} GET/SET on every channel"),
            outcome,
        ));
    }
    let jack_in_filter_table = filter_lists(filter, &KSPROPSETID_Jack, KSPROPERTY_JACK_DESCRIPTION)
        && filter_lists(filter, &KSPROPSETID_Jack, KSPROPERTY_JACK_DESCRIPTION2);
    findings.push(finding(
        "jack properties in the filter's table".to_owned(),
        if jack_in_filter_table {
            Ok(())
        } else {
            Err(
                "KSPROPSETID_Jack is not in the filter automation table: a bridge pin has \
                 no instance, so a pin table is never asked"
                    .to_owned(),
            )
        },
    ));
    for (index, pin) in pins(filter.description()).iter().enumerate() {
        let pin_id = u32::try_from(index).unwrap_or(u32::MAX);
        // SAFETY: pin categories point at the miniport's static GUIDs (or are null).
        let category = unsafe { pin.KsPinDescriptor.Category.as_ref() };
        let endpoint = category.is_some_and(|c| *c != KSCATEGORY_AUDIO);
        if endpoint {
            findings.push(finding(
                format!("pin {pin_id} jack"),
                jack_rules(filter, pin_id),
            ));
        } else {
            findings.push(finding(
                format!("pin {pin_id} without a jack"),
                no_jack(filter, pin_id),
            ));
        }
    }
    findings
}

/// The most channels `pin` of a wave filter takes: its endpoint's channel
/// count, which its topology nodes must address.
#[must_use]
pub fn endpoint_channels(wave: &'static PCFILTER_DESCRIPTOR, pin: u32) -> usize {
    let Some(pin) = pins(wave).get(pin as usize) else {
        return 0;
    };
    let at = offset_of!(KSDATARANGE_AUDIO, MaximumChannels);
    data_ranges(pin)
        .iter()
        .filter_map(|range| range.get(at..at + 4))
        .filter_map(|field| field.try_into().ok().map(u32::from_le_bytes))
        .max()
        .map_or(0, |most| most as usize)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code over buffers it sized"
)]
mod tests {
    use super::*;
    use crate::cable::{start_cable_adapter, CableAdapter, CableOptions};
    use crate::machine::{ClockMode, Machine};
    use crate::memory::{MemoryConfig, PhysicalMemory};
    use portcls_sys::{
        windows_abi, PCAUTOMATION_TABLE, PCNODE_DESCRIPTOR, PCPROPERTY_ITEM, PCPROPERTY_REQUEST,
    };
    use wavert_miniport::topology::{
        jack_handler, mute_handler, peak_meter_handler, volume_handler,
    };

    fn adapter() -> CableAdapter {
        let memory = PhysicalMemory::anonymous(MemoryConfig::default()).unwrap();
        let machine = Machine::new(memory, ClockMode::Virtual);
        start_cable_adapter(&machine, CableOptions::default()).unwrap()
    }

    fn failures(findings: &[Finding]) -> Vec<String> {
        findings
            .iter()
            .filter_map(|f| f.outcome.as_ref().err().map(|e| format!("{}: {e}", f.rule)))
            .collect()
    }

    #[test]
    fn the_cable_topology_filters_pass_every_rule() {
        let adapter = adapter();
        for (topology, wave) in [
            ("TopologyRender", "WaveRender"),
            ("TopologyCapture", "WaveCapture"),
        ] {
            let channels = endpoint_channels(adapter.wave_filter(wave).unwrap().description, 0);
            assert_eq!(channels, 16);
            let findings = check_topology_filter(&adapter.ks_filter(topology).unwrap(), channels);
            // Three nodes (named, basic support, round trips or reads), the
            // jack table, two pins.
            assert_eq!(findings.len(), 12, "{findings:?}");
            assert_eq!(failures(&findings), Vec::<String>::new(), "{topology}");
        }
    }

    #[test]
    fn nodes_with_fewer_channels_than_the_endpoint_fail() {
        let adapter = adapter();
        let findings = check_topology_filter(&adapter.ks_filter("TopologyRender").unwrap(), 20);
        let failed = failures(&findings);
        // Volume, mute and peak meter.
        assert_eq!(failed.len(), 3, "{failed:?}");
        assert!(
            failed[0].contains("16 channels, the endpoint has 20"),
            "{failed:?}"
        );
    }

    // ---- Broken handlers: each wraps the product's and breaks one thing.

    /// The request's value bytes.
    ///
    /// # Safety
    ///
    /// `request` is the live request the port passed to the handler.
    unsafe fn value<'a>(request: *mut PCPROPERTY_REQUEST) -> &'a mut [u8] {
        // SAFETY: a live request whose Value holds ValueSize bytes (caller).
        let request = unsafe { &mut *request };
        if request.Value.is_null() {
            return &mut [];
        }
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts_mut(request.Value.cast(), request.ValueSize as usize) }
    }

    /// The request's verb and first instance word.
    ///
    /// # Safety
    ///
    /// As [`value`].
    unsafe fn verb_and_channel(request: *mut PCPROPERTY_REQUEST) -> (u32, i32) {
        // SAFETY: a live request (caller).
        let request = unsafe { &*request };
        let channel = if request.Instance.is_null() || request.InstanceSize < 4 {
            i32::MIN
        } else {
            // SAFETY: at least four instance bytes (checked).
            unsafe { request.Instance.cast::<i32>().read_unaligned() }
        };
        (
            request.Verb & !portcls_sys::KSPROPERTY_TYPE_TOPOLOGY,
            channel,
        )
    }

    /// Basic support without the MULTICHANNEL flag.
    #[windows_abi]
    unsafe extern "system" fn volume_without_multichannel(
        request: *mut PCPROPERTY_REQUEST,
    ) -> NTSTATUS {
        // SAFETY: the port's request, passed on.
        let status = unsafe { volume_handler(request) };
        // SAFETY: as above.
        let (verb, _) = unsafe { verb_and_channel(request) };
        // SAFETY: as above.
        let bytes = unsafe { value(request) };
        if verb == KSPROPERTY_TYPE_BASICSUPPORT && bytes.len() >= DESCRIPTION + HEADER {
            bytes[DESCRIPTION + 12..DESCRIPTION + 16].copy_from_slice(&0u32.to_le_bytes());
        }
        status
    }

    /// SET answers success and does nothing.
    #[windows_abi]
    unsafe extern "system" fn volume_ignoring_set(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
        // SAFETY: the port's request.
        if unsafe { verb_and_channel(request) }.0 == KSPROPERTY_TYPE_SET {
            return STATUS_SUCCESS;
        }
        // SAFETY: the port's request, passed on.
        unsafe { volume_handler(request) }
    }

    /// A level past the range is applied (clamped) and then refused.
    #[windows_abi]
    unsafe extern "system" fn volume_refusing_after_applying(
        request: *mut PCPROPERTY_REQUEST,
    ) -> NTSTATUS {
        // SAFETY: the port's request, passed on.
        let status = unsafe { volume_handler(request) };
        // SAFETY: as above.
        let (verb, _) = unsafe { verb_and_channel(request) };
        // SAFETY: as above.
        let bytes = unsafe { value(request) };
        if verb == KSPROPERTY_TYPE_SET && bytes.len() >= 4 {
            let level = i32::from_le_bytes(bytes[..4].try_into().unwrap());
            if !(-96 * 65536..=0).contains(&level) {
                return STATUS_INVALID_PARAMETER;
            }
        }
        status
    }

    /// A channel past the last answers a level.
    #[windows_abi]
    unsafe extern "system" fn volume_with_a_phantom_channel(
        request: *mut PCPROPERTY_REQUEST,
    ) -> NTSTATUS {
        // SAFETY: the port's request.
        let (verb, channel) = unsafe { verb_and_channel(request) };
        if verb == KSPROPERTY_TYPE_GET && channel == 8 {
            // SAFETY: as above.
            let bytes = unsafe { value(request) };
            if bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&0i32.to_le_bytes());
                // SAFETY: as above.
                unsafe { (*request).ValueSize = 4 };
                return STATUS_SUCCESS;
            }
        }
        // SAFETY: the port's request, passed on.
        unsafe { volume_handler(request) }
    }

    /// Mute GET always answers FALSE.
    #[windows_abi]
    unsafe extern "system" fn mute_never_muted(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
        // SAFETY: the port's request, passed on.
        let status = unsafe { mute_handler(request) };
        // SAFETY: as above.
        if unsafe { verb_and_channel(request) }.0 == KSPROPERTY_TYPE_GET {
            // SAFETY: as above.
            let bytes = unsafe { value(request) };
            if bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&0u32.to_le_bytes());
            }
        }
        status
    }

    /// Jack descriptions that say "not connected" without presence detection.
    #[windows_abi]
    unsafe extern "system" fn jack_disconnected(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
        // SAFETY: the port's request, passed on.
        let status = unsafe { jack_handler(request) };
        // SAFETY: as above.
        let bytes = unsafe { value(request) };
        let connected = size_of::<KSMULTIPLE_ITEM>() + offset_of!(KSJACK_DESCRIPTION, IsConnected);
        // SAFETY: as above.
        let item = unsafe { (*request).PropertyItem };
        // SAFETY: the port's request names a live item of its table.
        let id = unsafe { (*item).Id };
        if status == STATUS_SUCCESS
            && id == KSPROPERTY_JACK_DESCRIPTION
            && bytes.len() >= connected + 4
        {
            bytes[connected..connected + 4].copy_from_slice(&0u32.to_le_bytes());
        }
        status
    }

    /// A peak meter that takes a SET.
    #[windows_abi]
    unsafe extern "system" fn peak_meter_settable(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
        // SAFETY: the port's live request.
        if unsafe { verb_and_channel(request) }.0 == KSPROPERTY_TYPE_SET {
            return STATUS_SUCCESS;
        }
        // SAFETY: the port's request, passed on.
        unsafe { peak_meter_handler(request) }
    }

    /// A peak meter with the legacy `KSPROPERTY_AUDIO_PEAKMETER` range
    /// (0x8000..0x7fff, the 16-bit sample range).
    #[windows_abi]
    unsafe extern "system" fn peak_meter_legacy_range(
        request: *mut PCPROPERTY_REQUEST,
    ) -> NTSTATUS {
        // SAFETY: the port's request, passed on.
        let status = unsafe { peak_meter_handler(request) };
        // SAFETY: as above.
        let basic = unsafe { verb_and_channel(request) }.0 == KSPROPERTY_TYPE_BASICSUPPORT;
        // SAFETY: as above.
        let bytes = unsafe { value(request) };
        if status == STATUS_SUCCESS && basic {
            let mut at = DESCRIPTION + HEADER;
            while at + STEPPING <= bytes.len() {
                let bounds = at + offset_of!(KSPROPERTY_STEPPING_LONG, Bounds);
                bytes[bounds..bounds + 4].copy_from_slice(&(-32_768i32).to_le_bytes());
                bytes[bounds + 4..bounds + 8].copy_from_slice(&32_767i32.to_le_bytes());
                at += STEPPING;
            }
        }
        status
    }

    /// A peak meter that reports signed peaks.
    #[windows_abi]
    unsafe extern "system" fn peak_meter_signed(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
        // SAFETY: the port's request, passed on.
        let status = unsafe { peak_meter_handler(request) };
        // SAFETY: as above.
        if status == STATUS_SUCCESS && unsafe { verb_and_channel(request) }.0 == KSPROPERTY_TYPE_GET
        {
            // SAFETY: as above.
            let bytes = unsafe { value(request) };
            if bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&(-5i32).to_le_bytes());
            }
        }
        status
    }

    /// Every pin answers with the speaker's jack.
    #[windows_abi]
    unsafe extern "system" fn jack_on_every_pin(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
        // SAFETY: the port's live request.
        let request_ref = unsafe { &mut *request };
        if !request_ref.Instance.is_null() && request_ref.InstanceSize >= 4 {
            // SAFETY: four instance bytes, ours to rewrite (the router
            // copied the client's).
            unsafe { request_ref.Instance.cast::<u32>().write_unaligned(1) };
        }
        // SAFETY: the port's request, passed on.
        unsafe { jack_handler(request) }
    }

    type Handler = portcls_sys::PCPFNPROPERTY_HANDLER;

    fn leak<T>(value: T) -> &'static T {
        Box::leak(Box::new(value))
    }

    /// A one-item automation table for (`set`, `id`) served by `handler`.
    fn table(set: &'static GUID, id: u32, handler: Handler) -> &'static PCAUTOMATION_TABLE {
        let items: &'static [PCPROPERTY_ITEM] = Box::leak(Box::new([PCPROPERTY_ITEM {
            Set: set,
            Id: id,
            Flags: portcls_sys::PCPROPERTY_ITEM_FLAG_GET
                | portcls_sys::PCPROPERTY_ITEM_FLAG_SET
                | portcls_sys::PCPROPERTY_ITEM_FLAG_BASICSUPPORT,
            Handler: handler,
        }]));
        let mut table = *property_table_of(wavert_miniport::filters::TOPOLOGY_RENDER_FILTER.Nodes);
        table.PropertyCount = 1;
        table.Properties = items.as_ptr();
        leak(table)
    }

    /// The volume node's table of the product's render topology.
    fn property_table_of(nodes: *const PCNODE_DESCRIPTOR) -> &'static PCAUTOMATION_TABLE {
        // SAFETY: the product's static node table, node 0 first.
        let table = unsafe { (*nodes).AutomationTable };
        // SAFETY: node 0 (volume) has a static table.
        unsafe { &*table }
    }

    /// The render topology filter as `edit` changes a copy of it, served
    /// by the product's render topology miniport.
    fn broken(
        adapter: &CableAdapter,
        edit: impl FnOnce(&mut PCFILTER_DESCRIPTOR, &mut Vec<PCNODE_DESCRIPTOR>),
    ) -> KsFilter {
        let (miniport, description) = adapter.topology_filter("TopologyRender").unwrap();
        let mut copy = *description;
        let mut node_list = nodes(description).to_vec();
        edit(&mut copy, &mut node_list);
        let node_list: &'static [PCNODE_DESCRIPTOR] = node_list.leak();
        copy.Nodes = node_list.as_ptr();
        KsFilter::new(&miniport, leak(copy)).unwrap()
    }

    fn volume_node(
        handler: Handler,
    ) -> impl FnOnce(&mut PCFILTER_DESCRIPTOR, &mut Vec<PCNODE_DESCRIPTOR>) {
        move |_, nodes| {
            nodes[0].AutomationTable =
                table(&KSPROPSETID_Audio, KSPROPERTY_AUDIO_VOLUMELEVEL, handler);
        }
    }

    fn peak_meter_node(
        handler: Handler,
    ) -> impl FnOnce(&mut PCFILTER_DESCRIPTOR, &mut Vec<PCNODE_DESCRIPTOR>) {
        move |_, nodes| {
            nodes[2].AutomationTable =
                table(&KSPROPSETID_Audio, KSPROPERTY_AUDIO_PEAKMETER2, handler);
        }
    }

    fn failed_rules(filter: &KsFilter) -> Vec<String> {
        check_topology_filter(filter, 16)
            .into_iter()
            .filter(|f| f.outcome.is_err())
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn each_rule_fails_on_a_handler_that_breaks_it() {
        let adapter = adapter();
        let cases: Vec<(&str, KsFilter, &[&str])> = vec![
            (
                "no MULTICHANNEL flag",
                broken(&adapter, volume_node(Some(volume_without_multichannel))),
                &["node 0 volume basic support"],
            ),
            (
                "SET ignored",
                broken(&adapter, volume_node(Some(volume_ignoring_set))),
                &["node 0 volume GET/SET on every channel"],
            ),
            (
                "refused after applying",
                broken(&adapter, volume_node(Some(volume_refusing_after_applying))),
                &["node 0 volume GET/SET on every channel"],
            ),
            (
                "a phantom channel",
                broken(&adapter, volume_node(Some(volume_with_a_phantom_channel))),
                &["node 0 volume GET/SET on every channel"],
            ),
            (
                "mute never muted",
                broken(&adapter, |_, nodes| {
                    nodes[1].AutomationTable = table(
                        &KSPROPSETID_Audio,
                        KSPROPERTY_AUDIO_MUTE,
                        Some(mute_never_muted),
                    );
                }),
                &["node 1 mute GET/SET on every channel"],
            ),
            (
                "a peak meter that takes a SET",
                broken(&adapter, peak_meter_node(Some(peak_meter_settable))),
                &["node 2 peak meter reads every channel, refuses SET"],
            ),
            (
                "the legacy peak-meter range",
                broken(&adapter, peak_meter_node(Some(peak_meter_legacy_range))),
                &["node 2 peak meter reads every channel, refuses SET"],
            ),
            (
                "signed peaks",
                broken(&adapter, peak_meter_node(Some(peak_meter_signed))),
                &["node 2 peak meter reads every channel, refuses SET"],
            ),
            (
                "unnamed node",
                broken(&adapter, |_, nodes| nodes[0].Name = std::ptr::null()),
                &["node 0 volume named"],
            ),
            (
                "jacks only in a pin table",
                broken(&adapter, |filter, _| {
                    filter.AutomationTable = std::ptr::null();
                }),
                &["jack properties in the filter's table", "pin 1 jack"],
            ),
            (
                "a disconnected jack",
                broken(&adapter, |filter, _| {
                    filter.AutomationTable = table(
                        &KSPROPSETID_Jack,
                        KSPROPERTY_JACK_DESCRIPTION,
                        Some(jack_disconnected),
                    );
                }),
                // The table lacks DESCRIPTION2 as well.
                &["jack properties in the filter's table", "pin 1 jack"],
            ),
            (
                "a jack on every pin",
                broken(&adapter, |filter, _| {
                    let items: &'static [PCPROPERTY_ITEM] = Box::leak(Box::new(
                        [KSPROPERTY_JACK_DESCRIPTION, KSPROPERTY_JACK_DESCRIPTION2].map(|id| {
                            PCPROPERTY_ITEM {
                                Set: &KSPROPSETID_Jack,
                                Id: id,
                                Flags: portcls_sys::PCPROPERTY_ITEM_FLAG_GET
                                    | portcls_sys::PCPROPERTY_ITEM_FLAG_BASICSUPPORT,
                                Handler: Some(jack_on_every_pin),
                            }
                        }),
                    ));
                    let mut jack_table = *table(&KSPROPSETID_Jack, 0, None);
                    jack_table.PropertyCount = 2;
                    jack_table.Properties = items.as_ptr();
                    filter.AutomationTable = leak(jack_table);
                }),
                &["pin 0 without a jack"],
            ),
        ];
        for (what, filter, want) in cases {
            assert_eq!(failed_rules(&filter), want, "{what}");
        }
        // The product's own filter, unchanged, passes.
        assert_eq!(
            failed_rules(&adapter.ks_filter("TopologyRender").unwrap()),
            Vec::<String>::new()
        );
    }
}
