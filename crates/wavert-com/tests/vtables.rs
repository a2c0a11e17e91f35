//! Objects driven purely through their raw vtables, as PortCls drives them.
#![allow(
    clippy::many_single_char_names,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)] // Short test code.

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
    ) -> NtResult<Stream> {
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
    let m = new_wave_rt_miniport(Wave {
        drops: drops.clone(),
    })
    .unwrap();
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
