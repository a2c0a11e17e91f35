//! A pin's data-range table read as KS reads it, attribute lists included.
//!
//! `KSPIN_DESCRIPTOR::DataRanges` is an array of `DataRangesCount`
//! pointers. Most lead to a data range (`FormatSize` bytes); but after a
//! range whose `Flags` has `KSDATARANGE_ATTRIBUTES` the next entry is a
//! `KSATTRIBUTE_LIST`, not a range (Learn, "KSDATARANGE": the following
//! entry "is to be interpreted as an attribute list that uses the
//! `KSATTRIBUTE_LIST` structure"). Mode-aware host pins list the
//! signal-processing mode attribute there (Learn, "`KSATTRIBUTE_LIST`";
//! SYSVAD's `speakerwavtable.h`: the range, then `PinDataRangeAttributeList`,
//! both counted). A walker that forgets the flag takes the list's `Count`
//! for a `FormatSize` and its pointer for format GUIDs.
//!
//! * [`read_range_table`]: the ranges with their attribute lists, and what
//!   is malformed. [`crate::engine::data_ranges`] (every format walk of the
//!   emulator: negotiation, the HLK format sweeps, the format rules) is its
//!   ranges.
//! * [`dataranges_property`] / [`read_dataranges_property`]: the same table
//!   as the value of `KSPROPERTY_PIN_DATARANGES` (Learn: a
//!   `KSMULTIPLE_ITEM`, then the items each at a 64-bit boundary), with each
//!   attribute list serialised as a `KSMULTIPLE_ITEM` whose `Size` is its
//!   extent followed by its attributes, as attributes travel after a data
//!   format (`ks.h`); read back as the HLK's KS-level `WaveTest` walks that
//!   value: an item after a flagged range is an attribute list, stepped over
//!   by its `Size`.
//! * [`check_range_attributes`]: the rule on a wave filter: every range of
//!   the host pin flagged and followed by a well-formed list naming
//!   `KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE`; no attributes on the other
//!   (bridge) pins; the property value read back gives the same table.

use std::mem::size_of;

use portcls_sys::{
    KSATTRIBUTE, KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE, KSATTRIBUTE_LIST, KSDATARANGE,
    KSDATARANGE_ATTRIBUTES, KSMULTIPLE_ITEM, PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::engine::pins;

/// Most attributes a list may claim before the walk calls it malformed
/// (rather than following a count that is some other structure's field).
const MAX_ATTRIBUTES: u32 = 16;

/// `KSPROPERTY_PIN_DATARANGES`: every item starts at a 64-bit boundary.
const ITEM_ALIGNMENT: usize = 8;

/// One data range of a pin and the attribute list that follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeEntry<R = &'static [u8]> {
    /// The range's `FormatSize` bytes (in the driver's static data, or
    /// read from a property value).
    pub range: R,
    /// The attributes of its `KSATTRIBUTE_LIST` (their headers), when the
    /// range is flagged `KSDATARANGE_ATTRIBUTES`.
    pub attributes: Option<Vec<KSATTRIBUTE>>,
}

/// A pin's data-range table as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeTable {
    /// The ranges, in table order.
    pub entries: Vec<RangeEntry>,
    /// What is malformed, in words (the walk stops at the first entry it
    /// cannot read).
    pub problems: Vec<String>,
}

/// The `KSDATARANGE_ATTRIBUTES` bit of a range's `Flags`.
fn flagged(range: &[u8]) -> bool {
    let at = std::mem::offset_of!(KSDATARANGE, Flags);
    range
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .is_some_and(|b| u32::from_le_bytes(b) & KSDATARANGE_ATTRIBUTES != 0)
}

/// The attributes of the list at `list`.
///
/// # Safety
///
/// `list` is a pin descriptor's entry after a flagged range: a
/// `KSATTRIBUTE_LIST` in the driver's static data, whose `Attributes`
/// (when `Count` is within [`MAX_ATTRIBUTES`]) lists `Count` attribute
/// pointers.
unsafe fn read_list(list: *const KSATTRIBUTE_LIST) -> Result<Vec<KSATTRIBUTE>, String> {
    // SAFETY: a readable KSATTRIBUTE_LIST (caller); copied out.
    let list = unsafe { list.read() };
    if list.Count == 0 || list.Count > MAX_ATTRIBUTES {
        return Err(format!("an attribute list of {} attributes", list.Count));
    }
    if list.Attributes.is_null() {
        return Err("an attribute list without attributes (NULL)".to_owned());
    }
    // SAFETY: `Count` attribute pointers (caller), static data.
    let pointers = unsafe { std::slice::from_raw_parts(list.Attributes, list.Count as usize) };
    pointers
        .iter()
        .map(|&attribute| {
            if attribute.is_null() {
                return Err("a NULL attribute in an attribute list".to_owned());
            }
            // SAFETY: a non-null attribute of the list (caller), copied out.
            let attribute = unsafe { attribute.read() };
            if (attribute.Size as usize) < size_of::<KSATTRIBUTE>() {
                return Err(format!(
                    "an attribute of {} bytes, under a KSATTRIBUTE",
                    attribute.Size
                ));
            }
            Ok(attribute)
        })
        .collect()
}

/// Reads `pin`'s data-range table: each range, and after a flagged one the
/// attribute list the next entry holds.
#[must_use]
pub fn read_range_table(pin: &'static PCPIN_DESCRIPTOR) -> RangeTable {
    let ks = &pin.KsPinDescriptor;
    let mut table = RangeTable::default();
    if ks.DataRanges.is_null() {
        return table;
    }
    // SAFETY: the descriptor lists `DataRangesCount` entry pointers (static data).
    let list = unsafe { std::slice::from_raw_parts(ks.DataRanges, ks.DataRangesCount as usize) };
    let mut entries = list.iter().enumerate();
    while let Some((index, &entry)) = entries.next() {
        if entry.is_null() {
            table.problems.push(format!("entry {index} is NULL"));
            break;
        }
        // SAFETY: a range entry starts with a KSDATARANGE header; its first
        // field is read alone (an entry misread as a range may be shorter).
        let size = unsafe { (*entry).FormatSize } as usize;
        if size < size_of::<KSDATARANGE>() {
            table.problems.push(format!(
                "entry {index}: FormatSize {size}, under a KSDATARANGE (an attribute list read as a range?)"
            ));
            break;
        }
        // SAFETY: the range is `FormatSize` bytes long (KS rule), static data.
        let range: &'static [u8] = unsafe { std::slice::from_raw_parts(entry.cast::<u8>(), size) };
        let attributes = if flagged(range) {
            let Some((_, &list)) = entries.next() else {
                table.problems.push(format!(
                    "entry {index} is flagged KSDATARANGE_ATTRIBUTES but no attribute list follows it"
                ));
                break;
            };
            if list.is_null() {
                table
                    .problems
                    .push(format!("the attribute list after entry {index} is NULL"));
                break;
            }
            // SAFETY: the entry after a flagged range is its KSATTRIBUTE_LIST (KS rule).
            match unsafe { read_list(list.cast::<KSATTRIBUTE_LIST>()) } {
                Ok(attributes) => Some(attributes),
                Err(e) => {
                    table.problems.push(format!("after entry {index}: {e}"));
                    break;
                }
            }
        } else {
            None
        };
        table.entries.push(RangeEntry { range, attributes });
    }
    table
}

/// `bytes` padded to the next item boundary.
fn pad(bytes: &mut Vec<u8>) {
    bytes.resize(bytes.len().next_multiple_of(ITEM_ALIGNMENT), 0);
}

/// `n` as a `ULONG` field (the values here are a few hundred bytes).
fn ulong(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The value of `KSPROPERTY_PIN_DATARANGES` for `table`: a
/// `KSMULTIPLE_ITEM` counting every item (ranges and attribute lists, as
/// `DataRangesCount` does), then each item at a 64-bit boundary.
#[must_use]
pub fn dataranges_property(table: &RangeTable) -> Vec<u8> {
    let mut body = Vec::new();
    let mut count = 0usize;
    for entry in &table.entries {
        body.extend_from_slice(entry.range);
        pad(&mut body);
        count += 1;
        if let Some(attributes) = &entry.attributes {
            let mut list = Vec::new();
            for attribute in attributes {
                list.extend_from_slice(attribute.as_bytes());
                pad(&mut list);
            }
            let header = KSMULTIPLE_ITEM {
                Size: ulong(size_of::<KSMULTIPLE_ITEM>() + list.len()),
                Count: ulong(attributes.len()),
            };
            body.extend_from_slice(header.as_bytes());
            body.extend_from_slice(&list);
            count += 1;
        }
    }
    let mut value = KSMULTIPLE_ITEM {
        Size: ulong(size_of::<KSMULTIPLE_ITEM>() + body.len()),
        Count: ulong(count),
    }
    .as_bytes()
    .to_vec();
    value.extend_from_slice(&body);
    value
}

/// Reads a `KSPROPERTY_PIN_DATARANGES` value as the HLK's KS-level
/// `WaveTest` walks it.
///
/// `Count` items from the first 64-bit boundary after the header, each at
/// the next one; the item after a range flagged
/// `KSDATARANGE_ATTRIBUTES` is an attribute list (its `KSMULTIPLE_ITEM`'s
/// `Size` is its extent), every other item a range of `FormatSize` bytes.
///
/// # Errors
///
/// An item that runs past the value, a range shorter than a `KSDATARANGE`,
/// an attribute list that does not hold its attributes, a flagged last
/// range, or a `Size` that is not the value's length.
pub fn read_dataranges_property(value: &[u8]) -> Result<Vec<RangeEntry<Vec<u8>>>, String> {
    let (header, _) = KSMULTIPLE_ITEM::read_from_prefix(value)
        .map_err(|_| format!("{} bytes, no KSMULTIPLE_ITEM", value.len()))?;
    if header.Size as usize != value.len() {
        return Err(format!(
            "Size {} for a value of {} bytes",
            header.Size,
            value.len()
        ));
    }
    let mut at = size_of::<KSMULTIPLE_ITEM>();
    let mut entries: Vec<RangeEntry<Vec<u8>>> = Vec::new();
    let mut next_is_list = false;
    for item in 0..header.Count {
        let rest = value
            .get(at..)
            .filter(|rest| !rest.is_empty())
            .ok_or_else(|| format!("item {item} past the value's end"))?;
        let size = if next_is_list {
            let (list, attributes) = KSMULTIPLE_ITEM::read_from_prefix(rest)
                .map_err(|_| format!("item {item}: a short attribute list"))?;
            let size = list.Size as usize;
            let body = attributes
                .get(..size.saturating_sub(size_of::<KSMULTIPLE_ITEM>()))
                .filter(|_| size >= size_of::<KSMULTIPLE_ITEM>())
                .ok_or_else(|| format!("item {item}: an attribute list of Size {size}"))?;
            let attributes = (0..list.Count as usize)
                .map(|n| {
                    body.get(n * size_of::<KSATTRIBUTE>()..)
                        .and_then(|b| KSATTRIBUTE::read_from_prefix(b).ok())
                        .map(|(a, _)| a)
                        .ok_or_else(|| format!("item {item}: attribute {n} past its Size"))
                })
                .collect::<Result<Vec<_>, String>>()?;
            if let Some(last) = entries.last_mut() {
                last.attributes = Some(attributes);
            }
            next_is_list = false;
            size
        } else {
            let size = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes) as usize;
            let range = rest
                .get(..size)
                .filter(|_| size >= size_of::<KSDATARANGE>())
                .ok_or_else(|| format!("item {item}: a range of FormatSize {size}"))?;
            next_is_list = flagged(range);
            entries.push(RangeEntry {
                range: range.to_vec(),
                attributes: None,
            });
            size
        };
        at = at
            .checked_add(size)
            .map(|end| end.next_multiple_of(ITEM_ALIGNMENT))
            .ok_or_else(|| format!("item {item}: a size that overflows"))?;
    }
    if next_is_list {
        return Err("the last range is flagged but no attribute list follows it".to_owned());
    }
    Ok(entries)
}

/// Whether `attributes` name the signal-processing mode.
fn names_mode(attributes: &[KSATTRIBUTE]) -> bool {
    attributes
        .iter()
        .any(|a| a.Attribute == KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE)
}

/// The attribute rule on a wave filter whose host (streaming) pin is
/// `host`.
///
/// That pin's ranges each flagged and followed by an attribute list
/// naming the mode, every other pin's ranges without attributes, and each
/// table read back the same from its `KSPROPERTY_PIN_DATARANGES` value.
///
/// # Errors
///
/// Every broken part, joined.
pub fn check_range_attributes(
    description: &'static PCFILTER_DESCRIPTOR,
    host: u32,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for (index, pin) in pins(description).iter().enumerate() {
        let is_host = u32::try_from(index) == Ok(host);
        let table = read_range_table(pin);
        problems.extend(table.problems.iter().map(|p| format!("pin {index}: {p}")));
        if table.entries.is_empty() {
            problems.push(format!("pin {index}: no data range"));
        }
        for (n, entry) in table.entries.iter().enumerate() {
            match (&entry.attributes, is_host) {
                (Some(attributes), true) if names_mode(attributes) => {}
                (Some(_), true) => problems.push(format!(
                    "pin {index} range {n}: its attribute list does not name KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE"
                )),
                (None, true) => problems.push(format!(
                    "pin {index} range {n}: not flagged KSDATARANGE_ATTRIBUTES (the host pin's modes are unannounced)"
                )),
                (Some(_), false) => problems.push(format!(
                    "pin {index} range {n}: attributes on a pin that is not the host pin"
                )),
                (None, false) => {}
            }
        }
        match read_dataranges_property(&dataranges_property(&table)) {
            Ok(read)
                if read.len() == table.entries.len()
                    && read.iter().zip(&table.entries).all(|(r, e)| {
                        r.range.as_slice() == e.range && r.attributes == e.attributes
                    }) => {}
            Ok(_) => problems.push(format!(
                "pin {index}: KSPROPERTY_PIN_DATARANGES reads back a different table"
            )),
            Err(e) => problems.push(format!("pin {index}: KSPROPERTY_PIN_DATARANGES: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code over tables it built"
)]
mod tests {
    use super::*;
    use portcls_sys::{
        KSATTRIBUTE_REQUIRED, KSDATARANGE_AUDIO, PCPIN_DESCRIPTOR, PKSATTRIBUTE, PKSDATARANGE,
    };
    use wavert_miniport::filters::{
        MODE_ATTRIBUTE_LIST, TOPOLOGY_CAPTURE_FILTER, TOPOLOGY_RENDER_FILTER, WAVE_BRIDGE_PIN,
        WAVE_HOST_PIN,
    };
    use wavert_miniport::{ac97, cable};

    /// No pin of a topology filter is a host pin.
    const NO_HOST: u32 = u32::MAX;

    fn leak<T>(value: T) -> &'static T {
        Box::leak(Box::new(value))
    }

    /// The product's four wave filters, by name.
    fn wave_filters() -> [(&'static str, &'static PCFILTER_DESCRIPTOR); 4] {
        [
            ("cable render", &cable::filters::WAVE_RENDER_FILTER),
            ("cable capture", &cable::filters::WAVE_CAPTURE_FILTER),
            ("AC'97 render", &ac97::filters::AC97_WAVE_RENDER_FILTER),
            ("AC'97 capture", &ac97::filters::AC97_WAVE_CAPTURE_FILTER),
        ]
    }

    #[test]
    fn the_host_pins_ranges_name_the_mode_and_no_bridge_pin_has_attributes() {
        for (name, filter) in wave_filters() {
            assert_eq!(
                check_range_attributes(filter, WAVE_HOST_PIN),
                Ok(()),
                "{name}"
            );
            let host = read_range_table(&pins(filter)[WAVE_HOST_PIN as usize]);
            assert!(host.problems.is_empty(), "{name}: {:?}", host.problems);
            // Every range counted with its list, as SYSVAD counts them.
            let count = pins(filter)[WAVE_HOST_PIN as usize]
                .KsPinDescriptor
                .DataRangesCount as usize;
            assert_eq!(count, 2 * host.entries.len(), "{name}");
            for entry in &host.entries {
                let attributes = entry.attributes.as_ref().unwrap();
                assert_eq!(attributes.len(), 1, "{name}");
                assert_eq!(
                    attributes[0],
                    KSATTRIBUTE {
                        Size: 24,
                        Flags: 0,
                        Attribute: KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE,
                    },
                    "{name}"
                );
                assert_eq!(entry.range.len(), size_of::<KSDATARANGE_AUDIO>(), "{name}");
            }
            let bridge = read_range_table(&pins(filter)[WAVE_BRIDGE_PIN as usize]);
            assert_eq!(bridge.entries.len(), 1, "{name}");
            assert_eq!(bridge.entries[0].attributes, None, "{name}");
            // What the engine's walks see: the ranges, never a list.
            assert_eq!(
                crate::engine::data_ranges(&pins(filter)[WAVE_HOST_PIN as usize]).len(),
                host.entries.len()
            );
        }
        assert_eq!(cable::filters::HOST_RANGES.len(), 5);
        for topology in [&TOPOLOGY_RENDER_FILTER, &TOPOLOGY_CAPTURE_FILTER] {
            assert_eq!(check_range_attributes(topology, NO_HOST), Ok(()));
        }
    }

    /// The cable's render filter with its host pin's table replaced by
    /// `entries` (and its bridge pin's by `bridge`, when given).
    fn filter_with(
        entries: Vec<PKSDATARANGE>,
        bridge: Option<Vec<PKSDATARANGE>>,
    ) -> &'static PCFILTER_DESCRIPTOR {
        let product = &cable::filters::WAVE_RENDER_FILTER;
        let mut pins: Vec<PCPIN_DESCRIPTOR> = pins(product).to_vec();
        for (pin, table) in [(WAVE_HOST_PIN, Some(entries)), (WAVE_BRIDGE_PIN, bridge)] {
            if let Some(table) = table {
                let ks = &mut pins[pin as usize].KsPinDescriptor;
                ks.DataRangesCount = u32::try_from(table.len()).unwrap();
                ks.DataRanges = table.leak().as_ptr();
            }
        }
        leak(PCFILTER_DESCRIPTOR {
            Pins: pins.leak().as_ptr(),
            ..*product
        })
    }

    /// The product's first host range with `flags`, in leaked memory.
    fn range(flags: u32) -> PKSDATARANGE {
        let product = read_range_table(&pins(&cable::filters::WAVE_RENDER_FILTER)[0]);
        let bytes = product.entries[0].range;
        let at = std::mem::offset_of!(KSDATARANGE_AUDIO, MaximumChannels);
        let field =
            |n: usize| u32::from_le_bytes(bytes[at + 4 * n..at + 4 * n + 4].try_into().unwrap());
        // SAFETY: the product's static range, a whole KSDATARANGE_AUDIO.
        let header = unsafe { bytes.as_ptr().cast::<KSDATARANGE>().read_unaligned() };
        let copy = KSDATARANGE_AUDIO {
            DataRange: KSDATARANGE {
                Flags: flags,
                ..header
            },
            MaximumChannels: field(0),
            MinimumBitsPerSample: field(1),
            MaximumBitsPerSample: field(2),
            MinimumSampleFrequency: field(3),
            MaximumSampleFrequency: field(4),
        };
        std::ptr::from_ref(leak(copy)).cast_mut().cast()
    }

    /// An attribute list of `attributes`, in leaked memory.
    fn list(attributes: &[KSATTRIBUTE]) -> PKSDATARANGE {
        let pointers: Vec<PKSATTRIBUTE> = attributes
            .iter()
            .map(|&a| std::ptr::from_ref(leak(a)).cast_mut())
            .collect();
        let list = KSATTRIBUTE_LIST {
            Count: u32::try_from(pointers.len()).unwrap(),
            Attributes: pointers.leak().as_ptr(),
        };
        std::ptr::from_ref(leak(list)).cast_mut().cast()
    }

    fn mode_list() -> PKSDATARANGE {
        std::ptr::addr_of!(MODE_ATTRIBUTE_LIST).cast_mut().cast()
    }

    fn rule(filter: &'static PCFILTER_DESCRIPTOR) -> String {
        check_range_attributes(filter, WAVE_HOST_PIN).unwrap_err()
    }

    #[test]
    fn a_walker_that_forgets_the_flag_reads_the_list_as_a_range() {
        // The product's table walked without the flag: the list is taken for
        // a range whose FormatSize is its Count.
        let forgetful = filter_with(vec![range(0), mode_list()], None);
        let table = read_range_table(&pins(forgetful)[0]);
        assert_eq!(table.entries.len(), 1);
        assert!(
            table.problems[0].contains("FormatSize 1, under a KSDATARANGE"),
            "{:?}",
            table.problems
        );
        assert!(
            rule(forgetful).contains("FormatSize 1"),
            "{}",
            rule(forgetful)
        );
        // The same in the property value a client reads: with the range's
        // flag cleared, the list's header is read as a range of 32 bytes.
        let product = read_range_table(&pins(&cable::filters::WAVE_RENDER_FILTER)[0]);
        let mut value = dataranges_property(&product);
        assert_eq!(read_dataranges_property(&value).unwrap().len(), 5);
        let flags = 8 + std::mem::offset_of!(KSDATARANGE, Flags);
        value[flags] &= !u8::try_from(KSDATARANGE_ATTRIBUTES).unwrap();
        let error = read_dataranges_property(&value).unwrap_err();
        assert!(
            error.contains("item 1: a range of FormatSize 32"),
            "{error}"
        );
    }

    #[test]
    fn the_property_value_holds_every_range_and_list_aligned() {
        let product = read_range_table(&pins(&cable::filters::WAVE_RENDER_FILTER)[0]);
        let value = dataranges_property(&product);
        // Header 8, then per range 88 (84 padded) + list 8 + 24.
        assert_eq!(value.len(), 8 + 5 * (88 + 32));
        assert_eq!(
            &value[4..8],
            &10u32.to_le_bytes(),
            "ranges and lists counted"
        );
        let read = read_dataranges_property(&value).unwrap();
        for (r, e) in read.iter().zip(&product.entries) {
            assert_eq!(r.range.as_slice(), e.range);
            assert_eq!(r.attributes, e.attributes);
        }
        // A Size that lies, a list cut short.
        let mut lying = value.clone();
        lying[0] = 7;
        assert!(read_dataranges_property(&lying).is_err());
        let cut = &value[..value.len() - 8];
        assert!(read_dataranges_property(cut).is_err());
    }

    #[test]
    fn each_broken_layout_fails_the_rule() {
        let other = KSATTRIBUTE {
            Size: 24,
            Flags: KSATTRIBUTE_REQUIRED,
            Attribute: portcls_sys::GUID::from_u128(0x0123_4567),
        };
        let short = KSATTRIBUTE { Size: 8, ..other };
        let flagged = KSDATARANGE_ATTRIBUTES;
        let cases: [(&str, &'static PCFILTER_DESCRIPTOR, &str); 7] = [
            (
                "flagged, last in the table",
                filter_with(vec![range(flagged)], None),
                "no attribute list follows",
            ),
            (
                "a list naming another attribute",
                filter_with(vec![range(flagged), list(&[other])], None),
                "does not name KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE",
            ),
            (
                "an empty list",
                filter_with(vec![range(flagged), list(&[])], None),
                "an attribute list of 0 attributes",
            ),
            (
                "an attribute shorter than its header",
                filter_with(vec![range(flagged), list(&[short])], None),
                "an attribute of 8 bytes",
            ),
            (
                "a NULL list",
                filter_with(vec![range(flagged), std::ptr::null_mut()], None),
                "is NULL",
            ),
            (
                "no attributes on the host pin (the layout before modes)",
                filter_with(vec![range(0)], None),
                "not flagged KSDATARANGE_ATTRIBUTES",
            ),
            (
                "attributes on the bridge pin",
                filter_with(
                    vec![range(flagged), mode_list()],
                    Some(vec![range(flagged), mode_list()]),
                ),
                "attributes on a pin that is not the host pin",
            ),
        ];
        for (what, filter, expected) in cases {
            let error = rule(filter);
            assert!(error.contains(expected), "{what}: {error}");
        }
        // The control, built the same way: passes.
        assert_eq!(
            check_range_attributes(filter_with(vec![range(flagged), mode_list()], None), 0),
            Ok(())
        );
    }
}
