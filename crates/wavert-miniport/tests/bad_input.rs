//! Hostile and mistaken input, through the vtables and property handlers:
//! each gets its documented NTSTATUS, nothing leaks, nothing crashes.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::too_many_lines,
    clippy::borrow_as_ptr,
    reason = "test code: long scenario tests, raw pointers built for the ABI"
)]

mod common;

use portcls_sys::windows_fn;
use std::ffi::c_void;
use std::ptr;

use common::{fake_event, ks_format, AlignedFormat, FakePortStream, Rig};
use portcls_sys::{
    IMiniportTopology, IPort, IUnknown, KSPROPERTY_AUDIO_MUTE, KSPROPERTY_AUDIO_VOLUMELEVEL,
    KSPROPERTY_JACK_DESCRIPTION, KSPROPERTY_JACK_DESCRIPTION2, KSPROPERTY_TYPE_BASICSUPPORT,
    KSPROPERTY_TYPE_GET, KSPROPERTY_TYPE_SET, KSPROPERTY_TYPE_SETSUPPORT, KSPROPERTY_TYPE_TOPOLOGY,
    KSSTATE_ACQUIRE, KSSTATE_PAUSE, KSSTATE_RUN, KSSTATE_STOP, NTSTATUS, PCFILTER_NODE,
    PCPROPERTY_ITEM, PCPROPERTY_REQUEST, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_NOT_IMPLEMENTED, STATUS_NOT_SUPPORTED,
    STATUS_NO_MATCH, STATUS_SUCCESS,
};
use wavert_com::{new_topology_miniport, ComPtr, NtResult, NtStatus};
use wavert_core::state::KsState;
use wavert_miniport::adapter::{install, PortClsServices, PHYSICAL_CONNECTIONS, SUBDEVICES};
use wavert_miniport::stream::Backend;
use wavert_miniport::topology::{jack_handler, mute_handler, volume_handler, VOLUME_MIN};
use wavert_miniport::{Direction, DmaMode, TopologyMiniport};

fn stereo16() -> Vec<u8> {
    ks_format(false, 2, 48_000, 16, 16)
}

#[test]
fn new_stream_rejects_bad_pins_formats_and_second_streams() {
    let rig = Rig::new(DmaMode::Looping);
    let port = FakePortStream::new();
    let good = stereo16();
    assert_eq!(
        rig.new_stream(Direction::Render, &port, 1, &good).err(),
        Some(STATUS_INVALID_PARAMETER),
        "bridge pin"
    );
    // Truncated WAVEFORMATEXTENSIBLE: FormatSize says 70.
    let mut short = good[..70].to_vec();
    short[0..4].copy_from_slice(&70u32.to_le_bytes());
    assert_eq!(
        rig.new_stream(Direction::Render, &port, 0, &short).err(),
        Some(STATUS_INVALID_PARAMETER)
    );
    // FormatSize below a KSDATAFORMAT: refused by the trampoline.
    let mut tiny = good.clone();
    tiny[0..4].copy_from_slice(&16u32.to_le_bytes());
    assert_eq!(
        rig.new_stream(Direction::Render, &port, 0, &tiny).err(),
        Some(STATUS_INVALID_PARAMETER)
    );
    // The cable's ranges hold every format a WAVEFORMATEXTENSIBLE here can
    // name (8 to 384 kHz, 1 to 16 channels, 8-bit unsigned to 32-bit float),
    // so a parsable format is not refused: the 8-bit ones open too (the
    // ks_formats rules hold PROPOSEDATAFORMAT and NewStream to the same
    // answer on every back-end, the AC'97's and HD Audio's refusals
    // included).
    for f in [
        ks_format(false, 2, 48_000, 8, 8),
        ks_format(false, 1, 8_000, 8, 8),
    ] {
        assert!(rig.new_stream(Direction::Render, &port, 0, &f).is_ok());
    }
    // 24 valid bits, in 32 or packed: both inside the 24-bit range.
    for f in [
        ks_format(false, 2, 48_000, 32, 24),
        ks_format(false, 2, 48_000, 24, 24),
    ] {
        assert!(rig.new_stream(Direction::Render, &port, 0, &f).is_ok());
    }
    let first = rig.new_stream(Direction::Render, &port, 0, &good).unwrap();
    assert_eq!(
        rig.new_stream(Direction::Render, &port, 0, &good).err(),
        Some(STATUS_INSUFFICIENT_RESOURCES),
        "one stream per side"
    );
    drop(first);
    assert!(rig.new_stream(Direction::Render, &port, 0, &good).is_ok());
}

#[test]
fn buffer_requests_and_frees() {
    let rig = Rig::new(DmaMode::Refill);
    let port = FakePortStream::new();
    let s = rig
        .new_stream(Direction::Capture, &port, 0, &stereo16())
        .unwrap();
    for n in [0, 3, 7, u32::MAX] {
        assert_eq!(
            s.allocate(Some(n), 4800).err(),
            Some(STATUS_INVALID_PARAMETER)
        );
    }
    assert_eq!(s.allocate(Some(2), 0).err(), Some(STATUS_INVALID_PARAMETER));
    assert_eq!(s.allocate(None, 0).err(), Some(STATUS_INVALID_PARAMETER));
    // Absurd size: clamped to the device maximum.
    let a = s.allocate(Some(2), u32::MAX).unwrap();
    assert_eq!(a.size, 2 * 1024 * 1024);
    assert_eq!(
        s.allocate(Some(2), 4800).err(),
        Some(STATUS_INVALID_DEVICE_REQUEST),
        "second buffer"
    );
    s.free(true, a.mdl, a.size);
    s.free(true, a.mdl, a.size); // twice: ignored
    s.free(true, ptr::null_mut(), 0); // never allocated: ignored
    assert_eq!(port.outstanding(), 0);
    assert!(port.bad_calls().is_empty(), "{:?}", port.bad_calls());
    assert!(rig
        .log
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("unknown buffer")));
}

#[test]
fn short_memory_shrinks_or_fails_cleanly() {
    let rig = Rig::new(DmaMode::Looping);
    let port = FakePortStream::new();
    let s = rig
        .new_stream(Direction::Render, &port, 0, &stereo16())
        .unwrap();
    // Fewer pages than asked: the buffer shrinks to fit.
    port.state().max_pages = Some(3);
    let a = s.allocate(Some(2), 40_000).unwrap();
    assert!(a.size <= 3 * 4096 && a.size % 8 == 0 && a.size > 8192);
    s.free(true, a.mdl, a.size);
    // The first two attempts fail: the wish is halved twice.
    {
        let mut st = port.state();
        st.max_pages = None;
        st.fail_allocs = 2;
    }
    let a = s.allocate(Some(2), 40_000).unwrap();
    assert!(a.size <= 40_000 / 4 + 4096, "{}", a.size);
    s.free(true, a.mdl, a.size);
    // Nothing at all.
    port.state().fail_allocs = 1000;
    assert_eq!(
        s.allocate(Some(2), 40_000).err(),
        Some(STATUS_INSUFFICIENT_RESOURCES)
    );
    // Mapping fails: the pages go back.
    {
        let mut st = port.state();
        st.fail_allocs = 0;
        st.fail_map = true;
    }
    assert_eq!(
        s.allocate(Some(1), 9600).err(),
        Some(STATUS_INSUFFICIENT_RESOURCES)
    );
    assert_eq!(port.outstanding(), 0);
    assert!(port.bad_calls().is_empty(), "{:?}", port.bad_calls());
    port.state().fail_map = false;
    // A buffer never freed is freed with the stream.
    let a = s.allocate(Some(1), 9600).unwrap();
    assert!(a.size > 0);
    assert_eq!(port.refs(), 2, "the open stream holds the port stream");
    drop(s);
    assert_eq!(port.outstanding(), 0);
    assert_eq!(
        port.refs(),
        1,
        "the stream released it: only the test's own is left"
    );
}

#[test]
fn events_states_and_formats() {
    let rig = Rig::new(DmaMode::Looping);
    let port = FakePortStream::new();
    let s = rig
        .new_stream(Direction::Render, &port, 0, &stereo16())
        .unwrap();
    let e = fake_event(7);
    assert_eq!(
        s.register(e),
        STATUS_INVALID_DEVICE_STATE,
        "before a buffer"
    );
    assert_eq!(
        s.set_state(KSSTATE_RUN),
        STATUS_INVALID_DEVICE_STATE,
        "a jump to RUN without a buffer: the last step is refused"
    );
    assert_eq!(
        rig.cable.state(Direction::Render),
        KsState::Stop,
        "a refused jump is walked back"
    );
    assert_eq!(s.set_state(7), STATUS_INVALID_PARAMETER);
    assert_eq!(s.set_state(-1), STATUS_INVALID_PARAMETER);
    assert_eq!(s.set_state(KSSTATE_ACQUIRE), STATUS_SUCCESS);
    assert_eq!(s.set_state(KSSTATE_PAUSE), STATUS_SUCCESS);
    assert_eq!(
        s.set_state(KSSTATE_RUN),
        STATUS_INVALID_DEVICE_STATE,
        "no buffer"
    );
    assert_eq!(
        s.set_state(KSSTATE_STOP),
        STATUS_SUCCESS,
        "PAUSE -> STOP in one call (ReactOS's port) is walked through ACQUIRE"
    );
    assert_eq!(rig.cable.state(Direction::Render), KsState::Stop);
    assert_eq!(s.set_state(KSSTATE_ACQUIRE), STATUS_SUCCESS);
    assert_eq!(s.set_state(KSSTATE_STOP), STATUS_SUCCESS);

    let plain = s.allocate(None, 9600).unwrap();
    assert_eq!(
        s.register(e),
        STATUS_INVALID_DEVICE_STATE,
        "no notifications"
    );
    s.free(false, plain.mdl, plain.size);
    let a = s.allocate(Some(1), 9600).unwrap();
    assert_eq!(s.register(ptr::null_mut()), STATUS_INVALID_PARAMETER);
    for i in 0..4 {
        assert_eq!(s.register(fake_event(10 + i)), STATUS_SUCCESS);
    }
    assert_eq!(s.register(fake_event(10)), STATUS_SUCCESS, "again: no-op");
    assert_eq!(s.register(fake_event(20)), STATUS_INSUFFICIENT_RESOURCES);
    assert_eq!(s.unregister(fake_event(21)), STATUS_NOT_FOUND);
    assert_eq!(s.unregister(fake_event(10)), STATUS_SUCCESS);
    assert_eq!(s.unregister(fake_event(10)), STATUS_NOT_FOUND);

    assert_eq!(s.set_format(&stereo16()), STATUS_SUCCESS);
    assert_eq!(
        s.set_format(&ks_format(true, 2, 48_000, 32, 32)),
        STATUS_NOT_SUPPORTED
    );
    assert_eq!(s.set_format(&stereo16()[..64]), STATUS_INVALID_PARAMETER);
    s.run();
    assert_eq!(
        s.allocate(Some(1), 9600).err(),
        Some(STATUS_INVALID_DEVICE_REQUEST)
    );
    // Freed while running: the engine lets go, the pages return.
    s.free(true, a.mdl, a.size);
    assert_eq!(port.outstanding(), 0);
    assert_eq!(
        s.unregister(fake_event(11)),
        STATUS_SUCCESS,
        "the buffer took its registrations: unregistering after the free (ReactOS's close order) succeeds"
    );
    rig.cable.on_timer(rig.log.advance(100_000));
    drop(s);
    assert!(!rig
        .log
        .timer_running
        .load(std::sync::atomic::Ordering::SeqCst));
}

/// `DataRangeIntersection` through the vtable.
fn intersect(rig: &Rig, pin: u32, client: &[u8], out_len: u32) -> (NTSTATUS, u32, Vec<u8>) {
    // Our own 16-bit PCM range, as the port passes it.
    let mut matching = vec![0u8; 84];
    wavert_miniport::cable::filters::PCM16_RANGE
        .write_ks_data_range(&mut matching)
        .unwrap();
    let mut client = AlignedFormat::new(client);
    let mut matching = AlignedFormat::new(&matching);
    let mut out = vec![0u8; out_len as usize];
    let mut len = 0u32;
    let f = rig.render.vtbl().base__.DataRangeIntersection;
    // SAFETY: live miniport, whole ranges, writable output.
    let status = unsafe {
        f(
            rig.render.this(),
            pin,
            client.ptr(),
            matching.ptr(),
            out_len,
            if out_len == 0 {
                ptr::null_mut()
            } else {
                out.as_mut_ptr().cast()
            },
            &raw mut len,
        )
    };
    (status, len, out)
}

#[test]
fn data_range_intersection_sizes_and_mismatches() {
    let rig = Rig::new(DmaMode::Looping);
    let client = stereo16();
    let (status, len, _) = intersect(&rig, 0, &client, 0);
    assert_eq!((status, len), (STATUS_BUFFER_OVERFLOW, 104));
    let (status, _, _) = intersect(&rig, 0, &client, 50);
    assert_eq!(status, STATUS_BUFFER_TOO_SMALL);
    let (status, len, out) = intersect(&rig, 0, &client, 200);
    assert_eq!((status, len), (STATUS_SUCCESS, 104));
    assert_eq!(&out[..104], &client[..]);
    let (status, _, _) = intersect(&rig, 0, &ks_format(false, 2, 22_050, 8, 8), 200);
    assert_eq!(status, STATUS_NO_MATCH);
    let (status, _, _) = intersect(&rig, 1, &client, 200);
    assert_eq!(status, STATUS_NOT_IMPLEMENTED, "bridge pin: port default");
    let mut not_audio = client;
    not_audio[16] ^= 0xFF;
    let (status, _, _) = intersect(&rig, 0, &not_audio, 200);
    assert_eq!(status, STATUS_NO_MATCH);
}

/// A property request against a topology miniport.
struct Prop {
    topology: ComPtr<IMiniportTopology>,
}

impl Prop {
    fn call(
        &self,
        handler: windows_fn!(unsafe fn(*mut PCPROPERTY_REQUEST) -> NTSTATUS),
        id: u32,
        node: u32,
        verb: u32,
        instance: Option<&[u8]>,
        value: &mut [u8],
    ) -> (NTSTATUS, u32) {
        let item = PCPROPERTY_ITEM {
            Set: ptr::null(),
            Id: id,
            Flags: 0,
            Handler: Some(handler),
        };
        let mut instance = instance.map(<[u8]>::to_vec);
        let mut request = PCPROPERTY_REQUEST {
            MajorTarget: self.topology.as_raw().cast::<IUnknown>(),
            MinorTarget: ptr::null_mut(),
            Node: node,
            PropertyItem: &item,
            Verb: verb,
            InstanceSize: instance
                .as_ref()
                .map_or(0, |i| u32::try_from(i.len()).unwrap()),
            Instance: instance
                .as_mut()
                .map_or(ptr::null_mut(), |i| i.as_mut_ptr().cast::<c_void>()),
            ValueSize: u32::try_from(value.len()).unwrap(),
            Value: if value.is_empty() {
                ptr::null_mut()
            } else {
                value.as_mut_ptr().cast()
            },
            Irp: ptr::null_mut(),
        };
        // SAFETY: a well-formed request for a TopologyMiniport.
        let status = unsafe { handler(&raw mut request) };
        (status, request.ValueSize)
    }
}

#[test]
fn volume_mute_and_jack_properties() {
    let p = Prop {
        topology: new_topology_miniport(TopologyMiniport::new(
            Direction::Render,
            wavert_miniport::cable::endpoints::RENDER,
        ))
        .unwrap(),
    };
    let ch0 = 0u32.to_le_bytes();
    let master = (-1i32).to_le_bytes();
    let (vol, mute, jack) = (
        volume_handler as windows_fn!(unsafe fn(_) -> _),
        mute_handler as windows_fn!(unsafe fn(_) -> _),
        jack_handler as windows_fn!(unsafe fn(_) -> _),
    );
    let v = KSPROPERTY_AUDIO_VOLUMELEVEL;
    let get = KSPROPERTY_TYPE_GET | KSPROPERTY_TYPE_TOPOLOGY;
    // Size query, short, exact, oversized.
    assert_eq!(
        p.call(vol, v, 0, get, Some(&ch0), &mut []),
        (STATUS_BUFFER_OVERFLOW, 4)
    );
    assert_eq!(
        p.call(vol, v, 0, get, Some(&ch0), &mut [0; 2]).0,
        STATUS_BUFFER_TOO_SMALL
    );
    let mut big = [0xEEu8; 64];
    assert_eq!(
        p.call(vol, v, 0, get, Some(&ch0), &mut big),
        (STATUS_SUCCESS, 4)
    );
    assert_eq!(&big[..4], &0i32.to_le_bytes());
    // Instance missing or bad, node wrong, verb wrong.
    assert_eq!(
        p.call(vol, v, 0, get, None, &mut [0; 4]).0,
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(
        p.call(vol, v, 0, get, Some(&[1]), &mut [0; 4]).0,
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(
        p.call(vol, v, 0, get, Some(&16u32.to_le_bytes()), &mut [0; 4])
            .0,
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(
        p.call(vol, v, 1, get, Some(&ch0), &mut [0; 4]).0,
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(
        p.call(
            vol,
            v,
            0,
            KSPROPERTY_TYPE_SETSUPPORT,
            Some(&ch0),
            &mut [0; 4]
        )
        .0,
        STATUS_INVALID_DEVICE_REQUEST
    );
    // SET clamps and snaps; master sets every channel.
    let mut level = (-200 * 65536i32).to_le_bytes();
    assert_eq!(
        p.call(vol, v, 0, KSPROPERTY_TYPE_SET, Some(&master), &mut level)
            .0,
        STATUS_SUCCESS
    );
    let mut level = (-3 * 65536 - 100i32).to_le_bytes();
    assert_eq!(
        p.call(vol, v, 0, KSPROPERTY_TYPE_SET, Some(&ch0), &mut level)
            .0,
        STATUS_SUCCESS
    );
    assert_eq!(
        p.call(vol, v, 0, KSPROPERTY_TYPE_SET, Some(&ch0), &mut [0; 3])
            .0,
        STATUS_BUFFER_TOO_SMALL
    );
    let mut out = [0u8; 4];
    p.call(vol, v, 0, get, Some(&ch0), &mut out);
    assert_eq!(i32::from_le_bytes(out), -3 * 65536 - 32768);
    p.call(vol, v, 0, get, Some(&1u32.to_le_bytes()), &mut out);
    assert_eq!(i32::from_le_bytes(out), VOLUME_MIN);
    // Basic support at every size.
    let bs = KSPROPERTY_TYPE_BASICSUPPORT;
    assert_eq!(
        p.call(vol, v, 0, bs, Some(&ch0), &mut []),
        (STATUS_BUFFER_OVERFLOW, 312)
    );
    assert_eq!(
        p.call(vol, v, 0, bs, Some(&ch0), &mut [0; 3]).0,
        STATUS_BUFFER_TOO_SMALL
    );
    assert_eq!(
        p.call(vol, v, 0, bs, Some(&ch0), &mut [0; 4]),
        (STATUS_SUCCESS, 4)
    );
    assert_eq!(
        p.call(vol, v, 0, bs, Some(&ch0), &mut [0; 40]),
        (STATUS_SUCCESS, 40)
    );
    // Room for the description but not every channel's range: the
    // description alone.
    assert_eq!(
        p.call(vol, v, 0, bs, Some(&ch0), &mut [0; 100]),
        (STATUS_SUCCESS, 40)
    );
    // Description, members header, then one range per channel (16).
    let mut full = [0u8; 320];
    assert_eq!(
        p.call(vol, v, 0, bs, Some(&ch0), &mut full),
        (STATUS_SUCCESS, 312)
    );
    assert_eq!(u32::from_le_bytes(full[4..8].try_into().unwrap()), 312);
    assert_eq!(u32::from_le_bytes(full[48..52].try_into().unwrap()), 16);
    for channel in 0..16 {
        let at = 64 + 16 * channel;
        assert_eq!(
            i32::from_le_bytes(full[at..at + 4].try_into().unwrap()),
            VOLUME_MIN
        );
    }
    // Mute.
    let m = KSPROPERTY_AUDIO_MUTE;
    assert_eq!(
        p.call(
            mute,
            m,
            1,
            KSPROPERTY_TYPE_SET,
            Some(&ch0),
            &mut 1u32.to_le_bytes()
        )
        .0,
        STATUS_SUCCESS
    );
    let mut out = [0u8; 4];
    assert_eq!(
        p.call(mute, m, 1, get, Some(&ch0), &mut out).0,
        STATUS_SUCCESS
    );
    assert_eq!(u32::from_le_bytes(out), 1);
    assert_eq!(
        p.call(mute, m, 0, get, Some(&ch0), &mut out).0,
        STATUS_INVALID_PARAMETER
    );
    // Jack: speaker pin is 1 on the render topology.
    let pin = 1u32.to_le_bytes();
    let j = KSPROPERTY_JACK_DESCRIPTION;
    assert_eq!(
        p.call(jack, j, PCFILTER_NODE, get, Some(&pin), &mut []),
        (STATUS_BUFFER_OVERFLOW, 36)
    );
    assert_eq!(
        p.call(jack, j, PCFILTER_NODE, get, Some(&pin), &mut [0; 20])
            .0,
        STATUS_BUFFER_TOO_SMALL
    );
    let mut desc = [0u8; 64];
    assert_eq!(
        p.call(jack, j, PCFILTER_NODE, get, Some(&pin), &mut desc),
        (STATUS_SUCCESS, 36)
    );
    assert_eq!(&desc[..8], &[36, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(
        u32::from_le_bytes(desc[32..36].try_into().unwrap()),
        1,
        "connected"
    );
    let j2 = KSPROPERTY_JACK_DESCRIPTION2;
    assert_eq!(
        p.call(jack, j2, PCFILTER_NODE, get, Some(&pin), &mut desc),
        (STATUS_SUCCESS, 16)
    );
    assert_eq!(
        p.call(
            jack,
            j,
            PCFILTER_NODE,
            get,
            Some(&0u32.to_le_bytes()),
            &mut desc
        )
        .0,
        STATUS_INVALID_DEVICE_REQUEST,
        "a pin without a jack"
    );
    assert_eq!(
        p.call(jack, j, PCFILTER_NODE, get, None, &mut desc).0,
        STATUS_INVALID_DEVICE_REQUEST
    );
    assert_eq!(
        p.call(
            jack,
            j,
            PCFILTER_NODE,
            KSPROPERTY_TYPE_SET,
            Some(&pin),
            &mut desc
        )
        .0,
        STATUS_INVALID_DEVICE_REQUEST
    );
    assert_eq!(
        p.call(jack, j, PCFILTER_NODE, bs, Some(&pin), &mut [0; 4]),
        (STATUS_SUCCESS, 4)
    );
    // A null request is refused, not dereferenced.
    let status =
        // SAFETY: the handler checks for null before anything else.
        unsafe { volume_handler(ptr::null_mut()) };
    assert_eq!(status, STATUS_INVALID_PARAMETER);
}

/// Fake PortCls services recording what the adapter does.
#[derive(Default)]
struct FakeServices {
    calls: std::cell::RefCell<Vec<String>>,
    fail_subdevice: Option<&'static str>,
}

impl PortClsServices for FakeServices {
    fn device_object(&self) -> *mut portcls_sys::DEVICE_OBJECT {
        ptr::null_mut()
    }
    fn new_port(&self, class_id: &portcls_sys::GUID) -> NtResult<ComPtr<IPort>> {
        self.calls
            .borrow_mut()
            .push(format!("new_port {:08X}", class_id.Data1));
        // Any COM object will do as a port here: a topology miniport.
        let object = new_topology_miniport(TopologyMiniport::new(
            Direction::Render,
            wavert_miniport::cable::endpoints::RENDER,
        ))?;
        // SAFETY: we own this reference; only IUnknown slots are used on it.
        Ok(unsafe { ComPtr::from_raw(object.into_raw().cast::<IPort>()) }.unwrap())
    }
    fn init_port(&self, _port: &ComPtr<IPort>, miniport: &ComPtr<IUnknown>) -> NtResult<()> {
        // What the port does first: ask the miniport for its description.
        let m = miniport.query::<portcls_sys::IMiniport>()?;
        let mut d = ptr::null_mut();
        // SAFETY: live miniport, writable out pointer.
        let status = unsafe { (m.vtbl().GetDescription)(m.this(), &raw mut d) };
        assert_eq!(status, STATUS_SUCCESS);
        // SAFETY: the descriptor is static.
        let pins = unsafe { (*d).PinCount };
        self.calls.borrow_mut().push(format!("init pins={pins}"));
        Ok(())
    }
    fn set_filter_interface_property(
        &self,
        name: &'static [u16],
        key: &portcls_sys::DEVPROPKEY,
        _kind: portcls_sys::DEVPROPTYPE,
        value: &[u8],
    ) -> NtResult<()> {
        let name = String::from_utf16(&name[..name.len() - 1]).unwrap();
        self.calls.borrow_mut().push(format!(
            "property {name} {:08X},{} {} bytes",
            key.fmtid.Data1,
            key.pid,
            value.len()
        ));
        Ok(())
    }
    fn register_subdevice(&self, name: &'static [u16], _port: &ComPtr<IPort>) -> NtResult<()> {
        let name = String::from_utf16(&name[..name.len() - 1]).unwrap();
        if self.fail_subdevice == Some(name.as_str()) {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        self.calls.borrow_mut().push(format!("register {name}"));
        Ok(())
    }
    fn register_physical_connection(
        &self,
        _from: &ComPtr<IPort>,
        from_pin: u32,
        _to: &ComPtr<IPort>,
        to_pin: u32,
    ) -> NtResult<()> {
        self.calls
            .borrow_mut()
            .push(format!("connect {from_pin}->{to_pin}"));
        Ok(())
    }
}

#[test]
fn adapter_registers_four_subdevices_and_two_connections() {
    let rig = Rig::new(DmaMode::Looping);
    let services = FakeServices::default();
    install(&services, &rig.cable).unwrap();
    let calls = services.calls.borrow();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("register")).count(),
        4
    );
    for s in &SUBDEVICES {
        assert!(calls.contains(&format!("register {}", s.name)));
    }
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("connect")).count(),
        PHYSICAL_CONNECTIONS.len()
    );
    assert!(calls.contains(&"connect 1->0".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"new_port CC9BE57A".to_string()),
        "WaveRT port"
    );
    assert!(
        calls.contains(&"new_port B4C90A32".to_string()),
        "topology port"
    );
    // Each wave filter gets its packet-size constraints (DEFAULT and RAW:
    // 16 + 2 * 24 bytes) before it is registered; topology filters none.
    for s in &SUBDEVICES {
        let property = calls
            .iter()
            .position(|c| *c == format!("property {} 9404F781,2 64 bytes", s.name));
        let registered = calls
            .iter()
            .position(|c| *c == format!("register {}", s.name));
        if s.name.starts_with("Wave") {
            assert!(property < registered && property.is_some(), "{calls:?}");
        } else {
            assert_eq!(property, None, "{calls:?}");
        }
    }

    let failing = FakeServices {
        fail_subdevice: Some("WaveCapture"),
        ..FakeServices::default()
    };
    assert_eq!(
        install(&failing, &rig.cable).err(),
        Some(NtStatus::INSUFFICIENT_RESOURCES)
    );
    assert!(!failing
        .calls
        .borrow()
        .iter()
        .any(|c| c.starts_with("connect")));
}

#[test]
fn packet_interfaces_answer_their_own_direction_and_refuse_what_they_cannot() {
    use portcls_sys::{
        IMiniportWaveRTInputStream, IMiniportWaveRTOutputStream, KSAUDIO_PRESENTATION_POSITION,
        STATUS_DEVICE_NOT_READY,
    };
    let rig = Rig::new(DmaMode::Looping);
    let port = FakePortStream::new();
    let render = rig
        .new_stream(Direction::Render, &port, 0, &stereo16())
        .unwrap();
    let capture = rig
        .new_stream(Direction::Capture, &port, 0, &stereo16())
        .unwrap();
    // Each stream answers the packet interface of its direction only.
    let output = render.0.query::<IMiniportWaveRTOutputStream>().unwrap();
    assert!(render.0.query::<IMiniportWaveRTInputStream>().is_err());
    let input = capture.0.query::<IMiniportWaveRTInputStream>().unwrap();
    assert!(capture.0.query::<IMiniportWaveRTOutputStream>().is_err());
    let count = || {
        let mut n = 0u32;
        // SAFETY: live stream, writable count.
        unsafe { (output.vtbl().GetPacketCount)(output.this(), &raw mut n) }
    };
    // SAFETY: live stream.
    let write =
        |n, flags, len| unsafe { (output.vtbl().SetWritePacket)(output.this(), n, flags, len) };
    let presentation = || {
        let mut p = KSAUDIO_PRESENTATION_POSITION::default();
        // SAFETY: live stream, writable position.
        unsafe { (output.vtbl().GetOutputStreamPresentationPosition)(output.this(), &raw mut p) }
    };
    let read = || {
        let (mut n, mut f, mut q, mut m) = (0u32, 0u32, 0u64, 0i32);
        // SAFETY: live stream, writable out-parameters.
        unsafe {
            (input.vtbl().GetReadPacket)(
                input.this(),
                &raw mut n,
                &raw mut f,
                &raw mut q,
                &raw mut m,
            )
        }
    };
    let all = || [count(), write(0, 0, 0), presentation(), read()];
    // No buffer yet.
    assert_eq!(all(), [STATUS_INVALID_DEVICE_STATE; 4]);
    // NULL out-parameters.
    // SAFETY: live stream; the NULL is refused before anything is written.
    let null_count = unsafe { (output.vtbl().GetPacketCount)(output.this(), ptr::null_mut()) };
    assert_eq!(null_count, STATUS_INVALID_PARAMETER);
    let (mut n, mut q, mut m) = (0u32, 0u64, 0i32);
    // SAFETY: as above, with the flags pointer NULL.
    let null_flags = unsafe {
        (input.vtbl().GetReadPacket)(
            input.this(),
            &raw mut n,
            ptr::null_mut(),
            &raw mut q,
            &raw mut m,
        )
    };
    assert_eq!(null_flags, STATUS_INVALID_PARAMETER);
    // Packet mode is event-driven: a buffer without notifications has none.
    let plain = render.allocate(None, 7_680).unwrap();
    let plain_capture = capture.allocate(None, 7_680).unwrap();
    assert_eq!(all(), [STATUS_NOT_SUPPORTED; 4]);
    render.free(false, plain.mdl, plain.size);
    capture.free(false, plain_capture.mdl, plain_capture.size);
    // With notifications: before RUN the count is 0, the buffer's two
    // packets are the OS's to write, and capture has nothing to read (in
    // STOP the stream refuses, as SYSVAD does).
    let rendered = render.allocate(Some(2), 7_680).unwrap();
    let captured = capture.allocate(Some(2), 7_680).unwrap();
    assert_eq!(count(), STATUS_SUCCESS);
    assert_eq!(write(0, 0, 0), STATUS_SUCCESS);
    assert_eq!(write(1, 0, 0), STATUS_SUCCESS);
    assert_eq!(presentation(), STATUS_SUCCESS);
    assert_eq!(read(), STATUS_INVALID_DEVICE_STATE);
    capture.run();
    assert_eq!(read(), STATUS_DEVICE_NOT_READY);
    capture.stop();
    render.free(true, rendered.mdl, rendered.size);
    capture.free(true, captured.mdl, captured.size);
    drop((output, input, render, capture));
    assert_eq!(port.outstanding(), 0);
    assert!(port.bad_calls().is_empty(), "{:?}", port.bad_calls());
}
