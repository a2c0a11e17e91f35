//! Objects driven purely through their raw vtables, as PortCls drives them.
#![allow(
    clippy::many_single_char_names,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::missing_const_for_fn
)] // Short test code; vtable slots are runtime functions.

/// Calls a raw vtable slot.
macro_rules! call {
    ($f:expr $(, $a:expr)* $(,)?) => {{
        let f = $f;
        // SAFETY: the test's objects are live and each argument is valid for the slot.
        unsafe { f($($a),*) }
    }};
}

/// The vtable of a test object's interface.
fn vt<V>(p: *mut c_void) -> &'static V {
    // SAFETY: `p` is a live interface `{ lpVtbl }` of the test's objects.
    let v = unsafe { *p.cast::<*const V>() };
    // SAFETY: its vtable is a `static`.
    unsafe { &*v }
} // Test code calling raw vtables.

use core::ffi::c_void;
use core::ptr;
use portcls_sys::windows_abi;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use portcls_sys::*;
use wavert_com::*;

static EMPTY: PCFILTER_DESCRIPTOR = PCFILTER_DESCRIPTOR {
    Version: 0,
    AutomationTable: ptr::null(),
    PinSize: 0,
    PinCount: 0,
    Pins: ptr::null(),
    NodeSize: 0,
    NodeCount: 0,
    Nodes: ptr::null(),
    ConnectionCount: 0,
    Connections: ptr::null(),
    CategoryCount: 0,
    Categories: ptr::null(),
};

struct Stream {
    drops: Arc<AtomicUsize>,
    mode: PacketMode,
}
impl Drop for Stream {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}
impl MiniportWaveRtStream for Stream {
    fn packet_mode(&self) -> PacketMode {
        self.mode
    }
    fn set_format(&self, _: &[u8]) -> NtResult<()> {
        Err(NtStatus::NOT_SUPPORTED)
    }
    fn set_state(&self, state: KSSTATE) -> NtResult<()> {
        if state == KSSTATE_RUN {
            Ok(())
        } else {
            Err(NtStatus::INVALID_PARAMETER)
        }
    }
    fn position(&self) -> NtResult<KSAUDIO_POSITION> {
        Ok(KSAUDIO_POSITION {
            PlayOffset: 7,
            WriteOffset: 9,
        })
    }
    fn allocate_audio_buffer(&self, requested: u32) -> NtResult<AudioBuffer> {
        Ok(AudioBuffer {
            mdl: ptr::null_mut(),
            actual_size: requested / 2,
            offset_from_first_page: 0,
            cache_type: MmCached,
        })
    }
    fn free_audio_buffer(&self, _: PMDL, _: u32) {}
    fn hw_latency(&self) -> KSRTAUDIO_HWLATENCY {
        KSRTAUDIO_HWLATENCY {
            FifoSize: 1,
            ChipsetDelay: 2,
            CodecDelay: 3,
        }
    }
    fn allocate_buffer_with_notification(
        &self,
        count: u32,
        requested: u32,
    ) -> NtResult<AudioBuffer> {
        self.allocate_audio_buffer(requested * count)
    }
    fn free_buffer_with_notification(&self, _: PMDL, _: u32) {}
    fn register_notification_event(&self, _: wavert_com::KernelEvent) -> NtResult<()> {
        Ok(())
    }
    fn unregister_notification_event(&self, _: wavert_com::KernelEvent) -> NtResult<()> {
        Ok(())
    }
    fn packet_count(&self) -> NtResult<u32> {
        Ok(42)
    }
}

struct Wave {
    drops: Arc<AtomicUsize>,
    /// What `signal_processing_modes` answers on pin 0 (`None`: no
    /// `IMiniportAudioSignalProcessing` at all).
    modes: Option<&'static [GUID]>,
    /// The attribute list the last `new_stream` got (shared with the test).
    attributes: SeenAttributes,
}

type SeenAttributes = Arc<std::sync::Mutex<Option<Vec<u8>>>>;

impl Wave {
    fn new(drops: &Arc<AtomicUsize>, modes: Option<&'static [GUID]>) -> (Self, SeenAttributes) {
        let seen = SeenAttributes::default();
        let wave = Self {
            drops: drops.clone(),
            modes,
            attributes: seen.clone(),
        };
        (wave, seen)
    }
}
impl Miniport for Wave {
    fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
        &EMPTY
    }
    fn data_range_intersection(
        &self,
        _: u32,
        _: &[u8],
        _: &[u8],
        _: &mut [u8],
        len: &mut u32,
    ) -> NtResult<()> {
        *len = 88;
        Err(NtStatus::BUFFER_OVERFLOW)
    }
}
impl MiniportWaveRt for Wave {
    type Stream = Stream;
    fn init(
        &self,
        _: Option<ComPtr<IUnknown>>,
        _: Option<ComPtr<IResourceList>>,
        _: ComPtr<IPortWaveRT>,
    ) -> NtResult<()> {
        Ok(())
    }
    fn new_stream(
        &self,
        _: ComPtr<IPortWaveRTStream>,
        _: u32,
        capture: bool,
        _: &[u8],
        attributes: Option<&[u8]>,
    ) -> NtResult<Stream> {
        *self.attributes.lock().unwrap() = attributes.map(<[u8]>::to_vec);
        Ok(Stream {
            drops: self.drops.clone(),
            mode: if capture {
                PacketMode::Input
            } else {
                PacketMode::Output
            },
        })
    }
    fn device_description(&self, d: &mut DEVICE_DESCRIPTION) -> NtResult<()> {
        d.Master = 1;
        Ok(())
    }
    fn has_signal_processing_modes(&self) -> bool {
        self.modes.is_some()
    }
    fn signal_processing_modes(&self, pin: u32) -> NtResult<&'static [GUID]> {
        match (pin, self.modes) {
            (0, Some(modes)) => Ok(modes),
            (1, _) => Err(NtStatus::NOT_SUPPORTED),
            _ => Err(NtStatus::INVALID_PARAMETER),
        }
    }
}

fn unk(p: *mut c_void) -> &'static IUnknownVtbl {
    vt::<IUnknownVtbl>(p)
}

fn qi(p: *mut c_void, iid: &GUID) -> (NTSTATUS, *mut c_void) {
    let mut out: PVOID = ptr::dangling_mut();
    let s = call!(unk(p).QueryInterface, p, iid, &raw mut out);
    (s, out)
}

fn add_ref(p: *mut c_void) -> u32 {
    call!(unk(p).AddRef, p)
}

fn release(p: *mut c_void) -> u32 {
    call!(unk(p).Release, p)
}

#[test]
fn stream_refcount_qi_matrix_and_calls() {
    let drops = Arc::new(AtomicUsize::new(0));
    let s = new_wave_rt_stream(Stream {
        drops: drops.clone(),
        mode: PacketMode::Output,
    })
    .unwrap()
    .into_raw()
    .cast::<c_void>();
    {
        assert_eq!(add_ref(s), 2);
        assert_eq!(release(s), 1);
        for iid in [
            IID_IUnknown,
            IID_IMiniportWaveRTStream,
            IID_IMiniportWaveRTStreamNotification,
        ] {
            let (st, p) = qi(s, &iid);
            assert_eq!((st, p), (STATUS_SUCCESS, s));
            assert_eq!(release(p), 1);
        }
        for iid in [
            IID_IMiniportWaveRTInputStream,
            IID_IMiniportWaveRT,
            IID_IMiniport,
            KSCATEGORY_AUDIO,
        ] {
            let (st, p) = qi(s, &iid);
            assert_eq!((st, p), (STATUS_NOINTERFACE, ptr::null_mut()));
        }
        let (st, out) = qi(s, &IID_IMiniportWaveRTOutputStream);
        assert_eq!(st, STATUS_SUCCESS);
        assert_ne!(out, s);
        // The packet interface's IUnknown reaches the same object.
        let (st, back) = qi(out, &IID_IUnknown);
        assert_eq!((st, back), (STATUS_SUCCESS, s));
        assert_eq!(release(back), 2);
        let ov = vt::<IMiniportWaveRTOutputStreamVtbl>(out);
        let mut n = 0;
        assert_eq!(call!(ov.GetPacketCount, out, &raw mut n), STATUS_SUCCESS);
        assert_eq!(n, 42);
        let mut pp = KSAUDIO_PRESENTATION_POSITION::default();
        assert_eq!(
            call!(ov.GetOutputStreamPresentationPosition, out, &raw mut pp),
            STATUS_NOT_SUPPORTED
        );
        assert_eq!(release(out), 1);

        let v = vt::<IMiniportWaveRTStreamNotificationVtbl>(s);
        assert_eq!(call!(v.base__.SetState, s, KSSTATE_RUN), STATUS_SUCCESS);
        assert_eq!(
            call!(v.base__.SetState, s, KSSTATE_PAUSE),
            STATUS_INVALID_PARAMETER
        );
        let mut pos = KSAUDIO_POSITION::default();
        assert_eq!(call!(v.base__.GetPosition, s, &raw mut pos), STATUS_SUCCESS);
        assert_eq!(
            pos,
            KSAUDIO_POSITION {
                PlayOffset: 7,
                WriteOffset: 9
            }
        );
        assert_eq!(
            call!(v.base__.GetPosition, s, ptr::null_mut()),
            STATUS_INVALID_PARAMETER
        );
        let mut lat = KSRTAUDIO_HWLATENCY::default();
        call!(v.base__.GetHWLatency, s, &raw mut lat);
        assert_eq!(
            lat,
            KSRTAUDIO_HWLATENCY {
                FifoSize: 1,
                ChipsetDelay: 2,
                CodecDelay: 3
            }
        );
        let mut reg = core::mem::MaybeUninit::<KSRTAUDIO_HWREGISTER>::uninit();
        assert_eq!(
            call!(v.base__.GetPositionRegister, s, reg.as_mut_ptr()),
            STATUS_NOT_SUPPORTED
        );
        let (mut mdl, mut size, mut off, mut cache) = (ptr::null_mut(), 0, 0, 0);
        assert_eq!(
            call!(
                v.AllocateBufferWithNotification,
                s,
                2,
                4800,
                &raw mut mdl,
                &raw mut size,
                &raw mut off,
                &raw mut cache
            ),
            STATUS_SUCCESS
        );
        assert_eq!((size, cache), (4800, MmCached));
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        assert_eq!(release(s), 0);
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[windows_abi]
unsafe extern "system" fn fake_qi(_: *mut c_void, _: REFIID, out: *mut PVOID) -> NTSTATUS {
    // SAFETY: callers pass a writable out pointer.
    unsafe { *out = ptr::null_mut() };
    STATUS_NOINTERFACE
}
static FAKE_REFS: AtomicUsize = AtomicUsize::new(1);
#[windows_abi]
unsafe extern "system" fn fake_add_ref(_: *mut c_void) -> u32 {
    (FAKE_REFS.fetch_add(1, Ordering::SeqCst) + 1) as u32
}
#[windows_abi]
unsafe extern "system" fn fake_release(_: *mut c_void) -> u32 {
    (FAKE_REFS.fetch_sub(1, Ordering::SeqCst) - 1) as u32
}
static FAKE_VTBL: IUnknownVtbl = IUnknownVtbl {
    QueryInterface: fake_qi,
    AddRef: fake_add_ref,
    Release: fake_release,
};

#[test]
#[allow(clippy::too_many_lines)] // One scenario, step by step.
fn wave_miniport_through_raw_vtable_creates_streams() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (wave, seen) = Wave::new(&drops, None);
    let m = new_wave_rt_miniport(wave).unwrap();
    let p = m.this();
    // A fake port and port stream: only IUnknown is used by the layer.
    let mut fake = IUnknown {
        lpVtbl: &raw const FAKE_VTBL,
    };
    let fake_ptr = ptr::addr_of_mut!(fake);
    {
        let v = vt::<IMiniportWaveRTVtbl>(p);
        for iid in [IID_IUnknown, IID_IMiniport, IID_IMiniportWaveRT] {
            let (st, q) = qi(p, &iid);
            assert_eq!((st, q), (STATUS_SUCCESS, p));
            release(q);
        }
        assert_eq!(
            qi(p, &IID_IMiniportTopology),
            (STATUS_NOINTERFACE, ptr::null_mut())
        );
        // Without modes there is no signal-processing interface.
        assert_eq!(
            qi(p, &IID_IMiniportAudioSignalProcessing),
            (STATUS_NOINTERFACE, ptr::null_mut())
        );
        assert_eq!(
            call!(v.Init, p, ptr::null_mut(), ptr::null_mut(), fake_ptr.cast()),
            STATUS_SUCCESS
        );
        assert_eq!(
            FAKE_REFS.load(Ordering::SeqCst),
            1,
            "Init's port reference was released after the call"
        );
        let mut d: *mut PCFILTER_DESCRIPTOR = ptr::null_mut();
        assert_eq!(
            call!(v.base__.GetDescription, p, &raw mut d),
            STATUS_SUCCESS
        );
        assert_eq!(d.cast_const(), ptr::addr_of!(EMPTY));
        let mut dd = DEVICE_DESCRIPTION::default();
        assert_eq!(
            call!(v.GetDeviceDescription, p, &raw mut dd),
            STATUS_SUCCESS
        );
        assert_eq!(dd.Master, 1);

        let mut format = KSDATAFORMAT {
            Alignment: [],
            FormatSize: u32::try_from(core::mem::size_of::<KSDATAFORMAT>()).unwrap(),
            Flags: 0,
            SampleSize: 0,
            Reserved: 0,
            MajorFormat: KSDATAFORMAT_TYPE_AUDIO,
            SubFormat: KSDATAFORMAT_SUBTYPE_PCM,
            Specifier: KSDATAFORMAT_SPECIFIER_WAVEFORMATEX,
        };
        let mut len = 0;
        let st = call!(
            v.base__.DataRangeIntersection,
            p,
            0,
            &raw mut format,
            &raw mut format,
            0,
            ptr::null_mut(),
            &raw mut len,
        );
        assert_eq!((st, len), (STATUS_BUFFER_OVERFLOW, 88));

        let mut stream: PMINIPORTWAVERTSTREAM = ptr::null_mut();
        let st = call!(
            v.NewStream,
            p,
            &raw mut stream,
            fake_ptr.cast(),
            0,
            1,
            &raw mut format
        );
        assert_eq!(st, STATUS_SUCCESS);
        let s = stream.cast::<c_void>();
        assert_eq!(
            *seen.lock().unwrap(),
            None,
            "a format without KSDATAFORMAT_ATTRIBUTES has no attribute list"
        );
        assert_eq!(
            FAKE_REFS.load(Ordering::SeqCst),
            1,
            "the test stream does not keep the port stream"
        );
        // A capture stream answers the input packet interface, not the output one.
        let (st, input) = qi(s, &IID_IMiniportWaveRTInputStream);
        assert_eq!(st, STATUS_SUCCESS);
        let iv = vt::<IMiniportWaveRTInputStreamVtbl>(input);
        let (mut n, mut f, mut q, mut more) = (0, 0, 0, 0);
        assert_eq!(
            call!(
                iv.GetReadPacket,
                input,
                &raw mut n,
                &raw mut f,
                &raw mut q,
                &raw mut more
            ),
            STATUS_NOT_SUPPORTED
        );
        release(input);
        assert_eq!(
            qi(s, &IID_IMiniportWaveRTOutputStream).0,
            STATUS_NOINTERFACE
        );
        assert_eq!(release(s), 0);
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop(m);
}

#[test]
fn com_ptr_clone_query_and_drop() {
    let drops = Arc::new(AtomicUsize::new(0));
    let s = new_wave_rt_stream(Stream {
        drops: drops.clone(),
        mode: PacketMode::None,
    })
    .unwrap();
    let c = s.clone();
    let base: ComPtr<IMiniportWaveRTStream> = c.query().unwrap();
    assert_eq!(base.this(), s.this());
    assert_eq!(
        c.query::<IMiniportWaveRTOutputStream>().unwrap_err(),
        NtStatus::NOINTERFACE
    );
    drop((s, c));
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(base);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

static TWO_MODES: [GUID; 2] = [
    AUDIO_SIGNALPROCESSINGMODE_DEFAULT,
    AUDIO_SIGNALPROCESSINGMODE_RAW,
];

/// `GetModes` through the vtable of the interface `QueryInterface` gave.
fn get_modes(sp: *mut c_void, pin: u32, modes: *mut GUID, count: &mut u32) -> NTSTATUS {
    let v = vt::<IMiniportAudioSignalProcessingVtbl>(sp);
    call!(v.GetModes, sp, pin, modes, count)
}

#[test]
fn get_modes_follows_the_documented_size_protocol() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (wave, _) = Wave::new(&drops, Some(&TWO_MODES));
    let m = new_wave_rt_miniport(wave).unwrap();
    let (st, sp) = qi(m.this(), &IID_IMiniportAudioSignalProcessing);
    assert_eq!(st, STATUS_SUCCESS);
    assert_ne!(sp, m.this(), "its own interface pointer");
    // Its IUnknown is the same object's: it answers the miniport too.
    let (st, back) = qi(sp, &IID_IMiniportWaveRT);
    assert_eq!((st, back), (STATUS_SUCCESS, m.this()));
    release(back);

    // NULL array: the count, STATUS_SUCCESS (Learn, GetModes remarks).
    let mut count = 0;
    assert_eq!(
        get_modes(sp, 0, ptr::null_mut(), &mut count),
        STATUS_SUCCESS
    );
    assert_eq!(count, 2);
    // An array one short: STATUS_BUFFER_TOO_SMALL, the count, nothing written.
    let mut modes = [GUID::from_u128(0); 2];
    let mut count = 1;
    assert_eq!(
        get_modes(sp, 0, modes.as_mut_ptr(), &mut count),
        STATUS_BUFFER_TOO_SMALL
    );
    assert_eq!((count, modes[0]), (2, GUID::from_u128(0)));
    // Enough room: the modes and their count.
    let mut big = [GUID::from_u128(7); 3];
    let mut count = 3;
    assert_eq!(
        get_modes(sp, 0, big.as_mut_ptr(), &mut count),
        STATUS_SUCCESS
    );
    assert_eq!(count, 2);
    assert_eq!(big, [TWO_MODES[0], TWO_MODES[1], GUID::from_u128(7)]);
    // A pin without modes, a pin that does not exist, no count pointer.
    let mut count = 5;
    assert_eq!(
        get_modes(sp, 1, ptr::null_mut(), &mut count),
        STATUS_NOT_SUPPORTED
    );
    assert_eq!(
        get_modes(sp, 9, ptr::null_mut(), &mut count),
        STATUS_INVALID_PARAMETER
    );
    let v = vt::<IMiniportAudioSignalProcessingVtbl>(sp);
    assert_eq!(
        call!(v.GetModes, sp, 0, ptr::null_mut(), ptr::null_mut()),
        STATUS_INVALID_PARAMETER
    );
    release(sp);
    drop(m);
}

/// A format followed, at the next 8-byte boundary, by an attribute list of
/// `list_size` announced bytes holding one mode attribute.
#[repr(C, align(8))]
struct FormatWithAttributes {
    format: KSDATAFORMAT,
    list: KSMULTIPLE_ITEM,
    mode: KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE,
}

fn format_with_attributes(flags: u32, list_size: u32) -> FormatWithAttributes {
    FormatWithAttributes {
        format: KSDATAFORMAT {
            Alignment: [],
            FormatSize: u32::try_from(core::mem::size_of::<KSDATAFORMAT>()).unwrap(),
            Flags: flags,
            SampleSize: 0,
            Reserved: 0,
            MajorFormat: KSDATAFORMAT_TYPE_AUDIO,
            SubFormat: KSDATAFORMAT_SUBTYPE_PCM,
            Specifier: KSDATAFORMAT_SPECIFIER_WAVEFORMATEX,
        },
        list: KSMULTIPLE_ITEM {
            Size: list_size,
            Count: 1,
        },
        mode: KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE {
            AttributeHeader: KSATTRIBUTE {
                Size: 40,
                Flags: 0,
                Attribute: KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE,
            },
            SignalProcessingMode: AUDIO_SIGNALPROCESSINGMODE_RAW,
        },
    }
}

#[test]
fn new_stream_passes_the_attribute_list_that_follows_a_flagged_format() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (wave, seen) = Wave::new(&drops, Some(&TWO_MODES));
    let m = new_wave_rt_miniport(wave).unwrap();
    let p = m.this();
    let mut fake = IUnknown {
        lpVtbl: &raw const FAKE_VTBL,
    };
    let fake_ptr = ptr::addr_of_mut!(fake);
    let v = vt::<IMiniportWaveRTVtbl>(p);
    let open = |f: &mut FormatWithAttributes| {
        let mut stream: PMINIPORTWAVERTSTREAM = ptr::null_mut();
        let st = call!(
            v.NewStream,
            p,
            &raw mut stream,
            fake_ptr.cast(),
            0,
            0,
            // The whole buffer, as PortCls passes it: the list follows the format.
            ptr::from_mut(f).cast::<KSDATAFORMAT>()
        );
        if !stream.is_null() {
            release(stream.cast());
        }
        st
    };
    // 64 bytes of format, then the list at 64: 8 bytes of header + 40.
    let mut f = format_with_attributes(KSDATAFORMAT_ATTRIBUTES, 48);
    assert_eq!(open(&mut f), STATUS_SUCCESS);
    let got = seen.lock().unwrap().take().expect("an attribute list");
    assert_eq!(got.len(), 48);
    assert_eq!(&got[..8], [48, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(&got[32..48], AUDIO_SIGNALPROCESSINGMODE_RAW.to_bytes());
    // The same bytes without the flag: no list.
    let mut f = format_with_attributes(0, 48);
    assert_eq!(open(&mut f), STATUS_SUCCESS);
    assert_eq!(*seen.lock().unwrap(), None);
    // A list too short for its own header is refused before the miniport.
    let mut f = format_with_attributes(KSDATAFORMAT_ATTRIBUTES, 7);
    assert_eq!(open(&mut f), STATUS_INVALID_PARAMETER);
    assert_eq!(*seen.lock().unwrap(), None);
    drop(m);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

/// A one-interface object (the shape of the port-side objects and test
/// doubles): an `IResourceList` whose only working slot counts entries.
struct CountedList {
    entries: u32,
    dropped: Arc<AtomicUsize>,
}

impl Drop for CountedList {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[windows_abi]
unsafe extern "system" fn list_entries(this: *mut c_void) -> ULONG {
    // SAFETY: this vtable is only installed on `CountedList` objects.
    unsafe { single_value::<CountedList>(this) }.entries
}

#[windows_abi]
unsafe extern "system" fn list_entries_of_type(
    _this: *mut c_void,
    _kind: CM_RESOURCE_TYPE,
) -> ULONG {
    0
}

#[windows_abi]
unsafe extern "system" fn list_find(
    _this: *mut c_void,
    _kind: CM_RESOURCE_TYPE,
    _index: ULONG,
) -> PCM_PARTIAL_RESOURCE_DESCRIPTOR {
    ptr::null_mut()
}

#[windows_abi]
unsafe extern "system" fn list_add(
    _this: *mut c_void,
    _translated: PCM_PARTIAL_RESOURCE_DESCRIPTOR,
    _untranslated: PCM_PARTIAL_RESOURCE_DESCRIPTOR,
) -> NTSTATUS {
    STATUS_NOT_IMPLEMENTED
}

#[windows_abi]
unsafe extern "system" fn list_add_from_parent(
    _this: *mut c_void,
    _parent: PRESOURCELIST,
    _kind: CM_RESOURCE_TYPE,
    _index: ULONG,
) -> NTSTATUS {
    STATUS_NOT_IMPLEMENTED
}

#[windows_abi]
unsafe extern "system" fn list_raw(_this: *mut c_void) -> PCM_RESOURCE_LIST {
    ptr::null_mut()
}

// SAFETY: `VTBL` is an `IResourceList` vtable whose IUnknown part is
// `unknown_vtbl::<Self, 0>()`; `IIDS` names IUnknown and IResourceList.
unsafe impl SingleInterface for CountedList {
    type Vtbl = IResourceListVtbl;
    const VTBL: &'static IResourceListVtbl = &IResourceListVtbl {
        base__: unknown_vtbl::<Self, 0>(),
        NumberOfEntries: list_entries,
        NumberOfEntriesOfType: list_entries_of_type,
        FindTranslatedEntry: list_find,
        FindUntranslatedEntry: list_find,
        AddEntry: list_add,
        AddEntryFromParent: list_add_from_parent,
        TranslatedList: list_raw,
        UntranslatedList: list_raw,
    };
    const IIDS: &'static [GUID] = &[IID_IUnknown, IID_IResourceList];
}

#[test]
fn single_interface_objects_count_answer_and_free_once() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let list: ComPtr<IResourceList> = new_single(CountedList {
        entries: 3,
        dropped: Arc::clone(&dropped),
    })
    .unwrap();
    let p = list.this();
    assert_eq!(
        call!(list.vtbl().NumberOfEntries, p),
        3,
        "slots reach the value"
    );
    let (status, same) = qi(p, &IID_IResourceList);
    assert_eq!(
        (status, same),
        (STATUS_SUCCESS, p),
        "its own interface, at offset 0"
    );
    let (status, none) = qi(p, &IID_IPort);
    assert_eq!((status, none), (STATUS_NOINTERFACE, ptr::null_mut()));
    assert_eq!(add_ref(p), 3, "the list's reference, QI's and this one");
    assert_eq!(release(p), 2);
    assert_eq!(release(p), 1, "QI's reference given back");
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    drop(list);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "freed at the last release, once"
    );
}
