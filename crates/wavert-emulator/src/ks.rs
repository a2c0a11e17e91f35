//! KS property requests routed to a miniport's automation tables the way
//! PortCls routes them, so property handlers run behind the same
//! `PCPROPERTY_REQUEST` they get on Windows.
//!
//! Routing (`ReactOS` portcls `undoc.cpp`, `PcHandlePropertyWithTable` and
//! its node helpers; Learn, `PCPROPERTY_REQUEST` and `KSNODEPROPERTY`):
//!
//! * A request whose flags carry `KSPROPERTY_TYPE_TOPOLOGY` is a node
//!   property: the input starts with a `KSNODEPROPERTY`; a node id past the
//!   filter's nodes is `STATUS_INVALID_PARAMETER`; a node without an
//!   automation table, or without the (set, id) item, is `STATUS_NOT_FOUND`.
//!   The handler sees `Node` = the node id and `Instance` = the bytes after
//!   the `KSNODEPROPERTY` (e.g. `KSNODEPROPERTY_AUDIO_CHANNEL.Channel`).
//! * Any other request sent to the filter goes to the filter's own
//!   automation table (`PCFILTER_DESCRIPTOR.AutomationTable`), with `Node` =
//!   `ULONG_MAX` and `Instance` = the bytes after the `KSPROPERTY` (for a
//!   `KSP_PIN`, its `PinId`). Pin automation tables are only reached
//!   through an open pin instance; a bridge pin has none, so a handler that
//!   lives only in a bridge pin's table is never called.
//! * `MajorTarget` is the miniport's `IUnknown`, `MinorTarget` null (no pin
//!   instance), `Verb` the request's flags as sent, `Value`/`ValueSize` the
//!   output buffer; the port returns the handler's status and `ValueSize`.
//! * A BASICSUPPORT request for an item without the BASICSUPPORT flag is
//!   answered by the port: the access flags (GET/SET of the item), and a
//!   bare `KSPROPERTY_DESCRIPTION` when the buffer holds one.
//! * A verb the item does not list (GET on a SET-only item, SET on a
//!   GET-only one) is refused by the port with
//!   `STATUS_INVALID_DEVICE_REQUEST` without calling the handler (KS keeps
//!   no handler for a verb the item lacks).

use std::mem::size_of;
use std::ptr;

use portcls_sys::{
    IUnknown, KSPROPTYPESETID_General, GUID, KSIDENTIFIER, KSPROPERTY_DESCRIPTION,
    KSPROPERTY_TYPE_BASICSUPPORT, KSPROPERTY_TYPE_GET, KSPROPERTY_TYPE_SET,
    KSPROPERTY_TYPE_TOPOLOGY, NTSTATUS, PCAUTOMATION_TABLE, PCFILTER_DESCRIPTOR, PCNODE_DESCRIPTOR,
    PCPROPERTY_ITEM, PCPROPERTY_ITEM_FLAG_BASICSUPPORT, PCPROPERTY_ITEM_FLAG_GET,
    PCPROPERTY_ITEM_FLAG_SET, PCPROPERTY_REQUEST, STATUS_BUFFER_TOO_SMALL,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_SUCCESS,
    ULONG, VT_EMPTY,
};
use wavert_com::{ComPtr, Interface};

use crate::port::Port;

/// `KSPROPERTY` (`KSIDENTIFIER`): set, id, flags.
const KSPROPERTY_SIZE: usize = size_of::<KSIDENTIFIER>();
/// `KSNODEPROPERTY`: a `KSPROPERTY`, the node id and a reserved word.
const KSNODEPROPERTY_SIZE: usize = KSPROPERTY_SIZE + 8;

/// Where a property request is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The filter itself (its automation table); pin-indexed filter
    /// properties carry the pin id in their instance ([`pin_instance`]).
    Filter,
    /// One node of the filter (`KSPROPERTY_TYPE_TOPOLOGY`).
    Node(u32),
}

/// A property request: which property, which verb, where.
#[derive(Clone, Copy, Debug)]
pub struct Property {
    /// The property set.
    pub set: GUID,
    /// The property id in the set.
    pub id: u32,
    /// `KSPROPERTY_TYPE_GET`, `_SET` or `_BASICSUPPORT` (the port adds
    /// `KSPROPERTY_TYPE_TOPOLOGY` for a node target).
    pub verb: u32,
    /// The filter or one of its nodes.
    pub target: Target,
}

/// What the port returns to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status (the handler's, or the port's own refusal).
    pub status: NTSTATUS,
    /// Bytes of the value written (GET, BASICSUPPORT), read (SET), or
    /// needed (size queries).
    pub value_size: u32,
}

impl Reply {
    const fn refused(status: NTSTATUS) -> Self {
        Self {
            status,
            value_size: 0,
        }
    }
}

/// The instance of a pin-indexed filter property: `KSP_PIN`'s `PinId` and
/// `Reserved`, what follows its `KSPROPERTY`.
#[must_use]
pub fn pin_instance(pin: u32) -> Vec<u8> {
    let mut bytes = pin.to_le_bytes().to_vec();
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes
}

/// The instance of a per-channel node property:
/// `KSNODEPROPERTY_AUDIO_CHANNEL`'s `Channel` and `Reserved`, what follows
/// its `KSNODEPROPERTY` (`-1` is the master channel).
#[must_use]
pub fn channel_instance(channel: i32) -> Vec<u8> {
    let mut bytes = channel.to_le_bytes().to_vec();
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes
}

/// A filter as its clients see it: the miniport behind it and its
/// descriptor.
pub struct KsFilter {
    miniport: ComPtr<IUnknown>,
    description: &'static PCFILTER_DESCRIPTOR,
}

impl std::fmt::Debug for KsFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KsFilter")
            .field("miniport", &self.miniport.as_raw())
            .field("nodes", &self.description.NodeCount)
            .finish()
    }
}

/// The items of an automation table (empty for none or a malformed one).
/// `table` is null or one of the miniport's static tables (descriptor data).
const fn property_items(table: *const PCAUTOMATION_TABLE) -> &'static [PCPROPERTY_ITEM] {
    // SAFETY: automation tables are static data of the miniport (PortCls
    // keeps pointers to them for the filter's life).
    let Some(table) = (unsafe { table.as_ref() }) else {
        return &[];
    };
    if table.Properties.is_null()
        || table.PropertyCount == 0
        || table.PropertyItemSize as usize != size_of::<PCPROPERTY_ITEM>()
    {
        return &[];
    }
    // SAFETY: `PropertyCount` items of the checked size, static data.
    unsafe { std::slice::from_raw_parts(table.Properties, table.PropertyCount as usize) }
}

/// The nodes of a filter descriptor (empty for a malformed table).
#[must_use]
pub const fn nodes(description: &'static PCFILTER_DESCRIPTOR) -> &'static [PCNODE_DESCRIPTOR] {
    if description.Nodes.is_null()
        || description.NodeCount == 0
        || description.NodeSize as usize != size_of::<PCNODE_DESCRIPTOR>()
    {
        return &[];
    }
    // SAFETY: `NodeCount` node descriptors of the checked size, static data.
    unsafe { std::slice::from_raw_parts(description.Nodes, description.NodeCount as usize) }
}

/// Whether `item` is (`set`, `id`).
fn is_item(item: &PCPROPERTY_ITEM, set: &GUID, id: u32) -> bool {
    // SAFETY: item sets point at static GUIDs (or are null).
    item.Id == id && unsafe { item.Set.as_ref() } == Some(set)
}

impl KsFilter {
    /// The filter of `miniport` (any interface of it), described by
    /// `description`.
    ///
    /// # Errors
    ///
    /// The miniport's `QueryInterface(IID_IUnknown)` status.
    pub fn new<I: Interface>(
        miniport: &ComPtr<I>,
        description: &'static PCFILTER_DESCRIPTOR,
    ) -> Result<Self, NTSTATUS> {
        let miniport = miniport
            .query::<IUnknown>()
            .map_err(wavert_com::NtStatus::code)?;
        Ok(Self {
            miniport,
            description,
        })
    }

    /// The filter of `port`'s miniport (wave or topology), once bound.
    #[must_use]
    pub fn of_port(port: &Port) -> Option<Self> {
        let description = port.description()?;
        match (port.wave_miniport(), port.topology_miniport()) {
            (Some(wave), _) => Self::new(&wave, description).ok(),
            (None, Some(topology)) => Self::new(&topology, description).ok(),
            (None, None) => None,
        }
    }

    /// The filter's descriptor.
    #[must_use]
    pub const fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
        self.description
    }

    /// The property items of the filter's own automation table.
    #[must_use]
    pub const fn filter_items(&self) -> &'static [PCPROPERTY_ITEM] {
        property_items(self.description.AutomationTable)
    }

    /// The property items of node `node` (empty for a node without any).
    #[must_use]
    pub fn node_items(&self, node: u32) -> &'static [PCPROPERTY_ITEM] {
        nodes(self.description)
            .get(node as usize)
            .map_or(&[], |n| property_items(n.AutomationTable))
    }

    /// Sends `property` with `instance` (what follows the `KSPROPERTY`, or
    /// the `KSNODEPROPERTY` for a node) and the output buffer `value`.
    #[must_use]
    pub fn request(&self, property: &Property, instance: &[u8], value: &mut [u8]) -> Reply {
        let (items, node, header) = match property.target {
            Target::Node(node) => {
                if node as usize >= nodes(self.description).len() {
                    return Reply::refused(STATUS_INVALID_PARAMETER);
                }
                (self.node_items(node), node, KSNODEPROPERTY_SIZE)
            }
            Target::Filter => (self.filter_items(), ULONG::MAX, KSPROPERTY_SIZE),
        };
        let Some(item) = items
            .iter()
            .find(|item| is_item(item, &property.set, property.id))
        else {
            return Reply::refused(STATUS_NOT_FOUND);
        };
        let verb = property.verb & !KSPROPERTY_TYPE_TOPOLOGY;
        let listed = match verb {
            KSPROPERTY_TYPE_GET => item.Flags & PCPROPERTY_ITEM_FLAG_GET != 0,
            KSPROPERTY_TYPE_SET => item.Flags & PCPROPERTY_ITEM_FLAG_SET != 0,
            KSPROPERTY_TYPE_BASICSUPPORT => {
                if item.Flags & PCPROPERTY_ITEM_FLAG_BASICSUPPORT == 0 {
                    return port_basic_support(item, value);
                }
                true
            }
            _ => false,
        };
        let Some(handler) = item.Handler.filter(|_| listed) else {
            return Reply::refused(STATUS_INVALID_DEVICE_REQUEST);
        };
        // The input buffer as the client sends it: header, then instance.
        // The header bytes are not read by handlers (PortCls hands them the
        // parsed fields); only the instance's place in it matters.
        let mut input = vec![0u8; header + instance.len()];
        input[header..].copy_from_slice(instance);
        let instance_len = u32::try_from(instance.len()).unwrap_or(u32::MAX);
        let value_len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        let flags = match property.target {
            Target::Node(_) => verb | KSPROPERTY_TYPE_TOPOLOGY,
            Target::Filter => verb,
        };
        let mut request = PCPROPERTY_REQUEST {
            MajorTarget: self.miniport.as_raw(),
            MinorTarget: ptr::null_mut(),
            Node: node,
            PropertyItem: item,
            Verb: flags,
            InstanceSize: instance_len,
            Instance: if instance.is_empty() {
                ptr::null_mut()
            } else {
                input[header..].as_mut_ptr().cast()
            },
            ValueSize: value_len,
            Value: if value.is_empty() {
                ptr::null_mut()
            } else {
                value.as_mut_ptr().cast()
            },
            Irp: ptr::null_mut(),
        };
        // SAFETY: the handler comes from the miniport's own table for this
        // filter; the request points at live buffers of the sizes it gives
        // (instance and value do not overlap) and at the live miniport.
        let status = unsafe { handler(&raw mut request) };
        // What the handler claims, as the port passes it on in
        // `Irp->IoStatus.Information`: a claim past the buffer is the rules'
        // to catch (every rule compares the size it gets with the one due).
        let value_size = request.ValueSize;
        Reply { status, value_size }
    }
}

/// The port's own basic-support answer for an item without a handler for
/// it: the item's access flags, and a bare description when there is room.
fn port_basic_support(item: &PCPROPERTY_ITEM, value: &mut [u8]) -> Reply {
    let access = item.Flags & (PCPROPERTY_ITEM_FLAG_GET | PCPROPERTY_ITEM_FLAG_SET);
    if value.len() < size_of::<ULONG>() {
        return Reply::refused(STATUS_BUFFER_TOO_SMALL);
    }
    let description = KSPROPERTY_DESCRIPTION {
        AccessFlags: access,
        DescriptionSize: u32::try_from(size_of::<KSPROPERTY_DESCRIPTION>()).unwrap_or(0),
        PropTypeSet: KSIDENTIFIER {
            Set: KSPROPTYPESETID_General,
            Id: VT_EMPTY,
            Flags: 0,
        },
        MembersListCount: 0,
        Reserved: 0,
    };
    let bytes = zerocopy::IntoBytes::as_bytes(&description);
    let written = if value.len() >= bytes.len() {
        value[..bytes.len()].copy_from_slice(bytes);
        bytes.len()
    } else {
        value[..4].copy_from_slice(&access.to_le_bytes());
        4
    };
    Reply {
        status: STATUS_SUCCESS,
        value_size: u32::try_from(written).unwrap_or(0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::cable::{start_cable_adapter, CableOptions};
    use crate::machine::{ClockMode, Machine};
    use crate::memory::{MemoryConfig, PhysicalMemory};
    use portcls_sys::{KSPROPSETID_Audio, KSPROPERTY_AUDIO_VOLUMELEVEL, STATUS_BUFFER_OVERFLOW};

    fn topology_render() -> (crate::cable::CableAdapter, KsFilter) {
        let memory = PhysicalMemory::anonymous(MemoryConfig::default()).unwrap();
        let machine = Machine::new(memory, ClockMode::Virtual);
        let adapter = start_cable_adapter(&machine, CableOptions::default()).unwrap();
        let filter = adapter.ks_filter("TopologyRender").unwrap();
        (adapter, filter)
    }

    const fn volume(verb: u32, target: Target) -> Property {
        Property {
            set: KSPROPSETID_Audio,
            id: KSPROPERTY_AUDIO_VOLUMELEVEL,
            verb,
            target,
        }
    }

    #[test]
    fn node_properties_reach_the_node_handler_with_the_channel_instance() {
        let (_adapter, filter) = topology_render();
        let mut level = [0xEEu8; 4];
        let reply = filter.request(
            &volume(KSPROPERTY_TYPE_GET, Target::Node(0)),
            &channel_instance(0),
            &mut level,
        );
        assert_eq!(
            reply,
            Reply {
                status: STATUS_SUCCESS,
                value_size: 4
            }
        );
        assert_eq!(i32::from_le_bytes(level), 0, "0 dB after start");
        let size = filter.request(
            &volume(KSPROPERTY_TYPE_GET, Target::Node(0)),
            &channel_instance(0),
            &mut [],
        );
        assert_eq!((size.status, size.value_size), (STATUS_BUFFER_OVERFLOW, 4));
    }

    #[test]
    fn the_port_refuses_what_no_table_lists() {
        let (_adapter, filter) = topology_render();
        let get = KSPROPERTY_TYPE_GET;
        let instance = channel_instance(0);
        // Past the last node; a node without the item (mute is node 1);
        // the filter's own table has no volume item; a verb not listed.
        assert_eq!(
            filter
                .request(&volume(get, Target::Node(3)), &instance, &mut [0; 4])
                .status,
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            filter
                .request(&volume(get, Target::Node(1)), &instance, &mut [0; 4])
                .status,
            STATUS_NOT_FOUND
        );
        assert_eq!(
            filter
                .request(&volume(get, Target::Filter), &instance, &mut [0; 4])
                .status,
            STATUS_NOT_FOUND
        );
        assert_eq!(
            filter
                .request(&volume(0x8000, Target::Node(0)), &instance, &mut [0; 4])
                .status,
            STATUS_INVALID_DEVICE_REQUEST
        );
    }

    #[test]
    fn the_port_answers_basic_support_for_an_item_without_it() {
        static ITEM: PCPROPERTY_ITEM = PCPROPERTY_ITEM {
            Set: &KSPROPSETID_Audio,
            Id: 1,
            Flags: PCPROPERTY_ITEM_FLAG_GET,
            Handler: None,
        };
        let mut value = [0u8; 64];
        let reply = port_basic_support(&ITEM, &mut value);
        assert_eq!((reply.status, reply.value_size), (STATUS_SUCCESS, 40));
        assert_eq!(&value[..8], &[1, 0, 0, 0, 40, 0, 0, 0]);
        let reply = port_basic_support(&ITEM, &mut value[..4]);
        assert_eq!((reply.status, reply.value_size), (STATUS_SUCCESS, 4));
        assert_eq!(
            port_basic_support(&ITEM, &mut value[..2]).status,
            STATUS_BUFFER_TOO_SMALL
        );
    }
}
