//! Test doubles: the crate's own fake platform (`wavert_miniport::fake`,
//! a manual clock), and a fake `IPortWaveRTStream` (a `wavert_com` object
//! reached only through its vtable) handing out shuffled fake physical
//! pages, with failure injection and leak counters.
#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part"
)]
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::missing_const_for_fn,
    clippy::significant_drop_tightening,
    clippy::borrow_as_ptr,
    reason = "test doubles: clarity over micro-optimisation"
)]

use portcls_sys::windows_abi;
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use portcls_sys::{
    IID_IPortWaveRTStream, IID_IUnknown, IPortWaveRTStream, IPortWaveRTStreamVtbl, GUID, KEVENT,
    MEMORY_CACHING_TYPE, NTSTATUS, PHYSICAL_ADDRESS, PKEVENT, PMDL, PVOID, REFIID, SIZE_T,
    STATUS_NOINTERFACE, STATUS_SUCCESS, ULONG,
};
use portcls_sys::{
    IMiniportWaveRT, IMiniportWaveRTStreamNotification, KSAUDIO_POSITION, KSRTAUDIO_HWREGISTER,
    KSSTATE, KSSTATE_ACQUIRE, KSSTATE_PAUSE, KSSTATE_RUN, KSSTATE_STOP,
};
use wavert_com::{
    new_single, new_wave_rt_miniport, single_value, unknown_vtbl, ComPtr, SingleInterface,
};
use wavert_miniport::{CableWave, Direction, DmaMode, VirtualCable};

pub use wavert_miniport::fake::{
    FakePlatform as TestPlatform, FakePlatformLog as PlatformLog, QPC_FREQUENCY,
};

/// A fake event object (only its address matters).
pub fn fake_event(n: usize) -> PKEVENT {
    ptr::without_provenance_mut::<KEVENT>(0x1_0000 + n * 64)
}

/// One allocation of the fake port stream.
pub struct FakeAllocation {
    pub memory: Vec<u8>,
    pub pages: Vec<u64>,
    pub mapped: bool,
}

/// Failure injection and counters.
#[derive(Default)]
pub struct FakeState {
    pub allocations: HashMap<usize, FakeAllocation>,
    /// Fail this many `AllocatePagesForMdl` calls.
    pub fail_allocs: u32,
    /// Give at most this many pages.
    pub max_pages: Option<u32>,
    /// Fail `MapAllocatedPages`.
    pub fail_map: bool,
    pub next_mdl: usize,
    pub next_frame: u64,
    pub alloc_calls: u32,
    pub bad_calls: Vec<String>,
}

/// The fake port stream's body: a `wavert_com` object with one interface,
/// the layout, counting and `QueryInterface` every COM object here has.
pub struct FakePortStreamValue {
    state: Mutex<FakeState>,
}

// SAFETY: `VTBL` is the `IPortWaveRTStream` vtable with
// `unknown_vtbl::<Self, 0>()` as its IUnknown part; `IIDS` names only
// IUnknown and `IPortWaveRTStream`.
unsafe impl SingleInterface for FakePortStreamValue {
    type Vtbl = IPortWaveRTStreamVtbl;
    const VTBL: &'static IPortWaveRTStreamVtbl = &IPortWaveRTStreamVtbl {
        base__: unknown_vtbl::<Self, 0>(),
        AllocatePagesForMdl: allocate_pages,
        AllocateContiguousPagesForMdl: allocate_contiguous,
        MapAllocatedPages: map,
        UnmapAllocatedPages: unmap,
        FreePagesFromMdl: free_pages,
        GetPhysicalPagesCount: page_count,
        GetPhysicalPageAddress: page_address,
    };
    const IIDS: &'static [GUID] = &[IID_IUnknown, IID_IPortWaveRTStream];
}

/// The test's own reference to a fake port stream.
pub struct FakePortStream {
    object: ComPtr<IPortWaveRTStream>,
}

fn fake<'a>(this: *mut c_void) -> MutexGuard<'a, FakeState> {
    // SAFETY: the vtable above is only installed on `FakePortStreamValue`
    // objects, which the test's reference keeps alive while a miniport
    // calls them.
    unsafe { single_value::<FakePortStreamValue>(this) }
        .state
        .lock()
        .unwrap()
}

/// A scrambled page frame: distinct, page aligned, far from 0 and not in
/// ascending order.
fn shuffled_frame(n: u64) -> u64 {
    let scrambled = (n.wrapping_mul(0x9E37_79B9) ^ (n << 7)) & 0xF_FFFF;
    (0x10_0000 + scrambled * 64 + n % 64) * 4096
}

#[windows_abi]
unsafe extern "system" fn allocate_pages(
    this: *mut c_void,
    _high: PHYSICAL_ADDRESS,
    bytes: SIZE_T,
) -> PMDL {
    let mut s = fake(this);
    s.alloc_calls += 1;
    if s.fail_allocs > 0 {
        s.fail_allocs -= 1;
        return ptr::null_mut();
    }
    let mut pages = u32::try_from(bytes.div_ceil(4096)).unwrap();
    if let Some(max) = s.max_pages {
        pages = pages.min(max);
    }
    if pages == 0 {
        return ptr::null_mut();
    }
    s.next_mdl += 1;
    let id = 0x5000_0000 + s.next_mdl * 0x100;
    let mut frames = Vec::new();
    for _ in 0..pages {
        s.next_frame += 1;
        frames.push(shuffled_frame(s.next_frame));
    }
    s.allocations.insert(
        id,
        FakeAllocation {
            memory: vec![0xAA; pages as usize * 4096],
            pages: frames,
            mapped: false,
        },
    );
    ptr::without_provenance_mut(id)
}
#[windows_abi]
unsafe extern "system" fn allocate_contiguous(
    this: *mut c_void,
    _low: PHYSICAL_ADDRESS,
    _high: PHYSICAL_ADDRESS,
    _bytes: SIZE_T,
) -> PMDL {
    fake(this)
        .bad_calls
        .push("AllocateContiguousPagesForMdl".into());
    ptr::null_mut()
}
#[windows_abi]
unsafe extern "system" fn map(this: *mut c_void, mdl: PMDL, _cache: MEMORY_CACHING_TYPE) -> PVOID {
    let mut s = fake(this);
    if s.fail_map {
        return ptr::null_mut();
    }
    let Some(a) = s.allocations.get_mut(&(mdl as usize)) else {
        s.bad_calls.push("map unknown".into());
        return ptr::null_mut();
    };
    a.mapped = true;
    a.memory.as_mut_ptr().cast()
}
#[windows_abi]
unsafe extern "system" fn unmap(this: *mut c_void, base: PVOID, mdl: PMDL) {
    let mut s = fake(this);
    match s.allocations.get_mut(&(mdl as usize)) {
        Some(a) if a.mapped && a.memory.as_ptr().cast::<c_void>() == base.cast_const() => {
            a.mapped = false;
        }
        _ => s.bad_calls.push("unmap of something not mapped".into()),
    }
}
#[windows_abi]
unsafe extern "system" fn free_pages(this: *mut c_void, mdl: PMDL) {
    let mut s = fake(this);
    match s.allocations.remove(&(mdl as usize)) {
        Some(a) if !a.mapped => {}
        Some(_) => s.bad_calls.push("free of mapped pages".into()),
        None => s.bad_calls.push("free of unknown MDL".into()),
    }
}
#[windows_abi]
unsafe extern "system" fn page_count(this: *mut c_void, mdl: PMDL) -> ULONG {
    let s = fake(this);
    s.allocations
        .get(&(mdl as usize))
        .map_or(0, |a| u32::try_from(a.pages.len()).unwrap())
}
/// The hidden-return-pointer shape: result pointer right after `this`.
#[windows_abi]
unsafe extern "system" fn page_address(
    this: *mut c_void,
    result: *mut PHYSICAL_ADDRESS,
    mdl: PMDL,
    index: ULONG,
) -> *mut PHYSICAL_ADDRESS {
    let s = fake(this);
    let address = s
        .allocations
        .get(&(mdl as usize))
        .and_then(|a| a.pages.get(index as usize))
        .copied()
        .unwrap_or(0);
    // SAFETY: the caller passes a writable result slot.
    unsafe {
        result.write(PHYSICAL_ADDRESS {
            QuadPart: i64::try_from(address).unwrap(),
        });
    }
    result
}

impl FakePortStream {
    pub fn new() -> Self {
        let value = FakePortStreamValue {
            state: Mutex::new(FakeState::default()),
        };
        Self {
            object: new_single(value).unwrap(),
        }
    }
    /// Failure injection and counters.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        fake(self.object.this())
    }
    /// The interface pointer PortCls would pass to `NewStream`.
    pub fn as_port_stream(&self) -> *mut IPortWaveRTStream {
        self.object.this().cast()
    }
    /// A counted reference (as `NewStream` gives the miniport).
    pub fn com_ptr(&self) -> ComPtr<IPortWaveRTStream> {
        self.object.clone()
    }
    /// References held, the test's own included: the count `Release`
    /// returns after an `AddRef` of the probe's own.
    pub fn refs(&self) -> u32 {
        let unknown = &self.object.vtbl().base__;
        // SAFETY: a live object the test holds a reference to.
        unsafe { (unknown.AddRef)(self.object.this()) };
        // SAFETY: gives back the reference the probe just added.
        unsafe { (unknown.Release)(self.object.this()) }
    }
    pub fn outstanding(&self) -> usize {
        self.state().allocations.len()
    }
    pub fn bad_calls(&self) -> Vec<String> {
        self.state().bad_calls.clone()
    }
    /// The buffer bytes behind an MDL (the client's view).
    pub fn memory(&self, mdl: PMDL) -> *mut u8 {
        self.state()
            .allocations
            .get_mut(&(mdl as usize))
            .unwrap()
            .memory
            .as_mut_ptr()
    }
    pub fn pages(&self, mdl: PMDL) -> Vec<u64> {
        self.state().allocations[&(mdl as usize)].pages.clone()
    }
}

/// `KSDATAFORMAT` + `WAVEFORMATEXTENSIBLE` bytes for a format.
pub fn ks_format(float: bool, channels: u16, rate: u32, container: u16, valid: u16) -> Vec<u8> {
    use wavert_core::format::{AudioFormat, SampleType};
    let sample_type = if float {
        SampleType::Float
    } else {
        SampleType::Pcm
    };
    let f = AudioFormat::extensible(sample_type, channels, rate, container, valid).unwrap();
    let mut out = vec![0u8; wavert_core::range::ks_data_format_len(&f)];
    wavert_core::range::write_ks_data_format(&f, &mut out).unwrap();
    out
}

/// Pointer of a byte vector as a `KSDATAFORMAT` (8-byte aligned copy).
pub struct AlignedFormat(Vec<u64>);

impl AlignedFormat {
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: words has at least bytes.len() bytes.
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr(), words.as_mut_ptr().cast::<u8>(), bytes.len());
        }
        Self(words)
    }
    pub fn ptr(&mut self) -> *mut portcls_sys::KSDATAFORMAT {
        self.0.as_mut_ptr().cast()
    }
}

/// A cable with both wave miniports, driven through their vtables.
pub struct Rig {
    pub log: Arc<PlatformLog>,
    pub cable: Arc<VirtualCable<TestPlatform>>,
    pub render: ComPtr<IMiniportWaveRT>,
    pub capture: ComPtr<IMiniportWaveRT>,
}

impl Rig {
    pub fn new(mode: DmaMode) -> Self {
        let log = Arc::new(PlatformLog::default());
        log.qpc
            .store(1_000_000, std::sync::atomic::Ordering::SeqCst);
        let cable = Arc::new(VirtualCable::new(TestPlatform(log.clone()), mode));
        let render =
            new_wave_rt_miniport(CableWave::new(cable.clone(), Direction::Render)).unwrap();
        let capture =
            new_wave_rt_miniport(CableWave::new(cable.clone(), Direction::Capture)).unwrap();
        Self {
            log,
            cable,
            render,
            capture,
        }
    }

    /// `NewStream` through the vtable.
    pub fn new_stream(
        &self,
        direction: Direction,
        port: &FakePortStream,
        pin: u32,
        format: &[u8],
    ) -> Result<Stream, NTSTATUS> {
        let miniport = match direction {
            Direction::Render => &self.render,
            Direction::Capture => &self.capture,
        };
        let mut out = ptr::null_mut();
        let mut format = AlignedFormat::new(format);
        let new_stream = miniport.vtbl().NewStream;
        // SAFETY: live miniport; valid pointers for the call.
        let status = unsafe {
            new_stream(
                miniport.this(),
                &raw mut out,
                port.as_port_stream(),
                pin,
                u8::from(direction == Direction::Capture),
                format.ptr(),
            )
        };
        if status != STATUS_SUCCESS {
            assert!(out.is_null());
            return Err(status);
        }
        // SAFETY: the stream's first interface is the notification one; we own its reference.
        let stream = unsafe { ComPtr::from_raw(out.cast::<IMiniportWaveRTStreamNotification>()) };
        Ok(Stream(stream.unwrap()))
    }
}

/// A stream called through its vtable.
pub struct Stream(pub ComPtr<IMiniportWaveRTStreamNotification>);

pub struct Allocation {
    pub mdl: PMDL,
    pub size: u32,
    pub offset: u32,
    pub cache: MEMORY_CACHING_TYPE,
}

impl Stream {
    fn v(&self) -> &portcls_sys::IMiniportWaveRTStreamNotificationVtbl {
        self.0.vtbl()
    }
    pub fn allocate(
        &self,
        notifications: Option<u32>,
        requested: u32,
    ) -> Result<Allocation, NTSTATUS> {
        let mut mdl = ptr::null_mut();
        let (mut size, mut offset, mut cache) = (0, 0, 0);
        let status = match notifications {
            // SAFETY: live stream, writable out-parameters.
            Some(n) => unsafe {
                (self.v().AllocateBufferWithNotification)(
                    self.0.this(),
                    n,
                    requested,
                    &raw mut mdl,
                    &raw mut size,
                    &raw mut offset,
                    &raw mut cache,
                )
            },
            // SAFETY: as above.
            None => unsafe {
                (self.v().base__.AllocateAudioBuffer)(
                    self.0.this(),
                    requested,
                    &raw mut mdl,
                    &raw mut size,
                    &raw mut offset,
                    &raw mut cache,
                )
            },
        };
        if status == STATUS_SUCCESS {
            Ok(Allocation {
                mdl,
                size,
                offset,
                cache,
            })
        } else {
            Err(status)
        }
    }
    pub fn free(&self, notifications: bool, mdl: PMDL, size: u32) {
        if notifications {
            // SAFETY: live stream.
            unsafe { (self.v().FreeBufferWithNotification)(self.0.this(), mdl, size) };
        } else {
            // SAFETY: live stream.
            unsafe { (self.v().base__.FreeAudioBuffer)(self.0.this(), mdl, size) };
        }
    }
    pub fn set_state(&self, state: KSSTATE) -> NTSTATUS {
        // SAFETY: live stream.
        unsafe { (self.v().base__.SetState)(self.0.this(), state) }
    }
    pub fn run(&self) {
        for s in [KSSTATE_ACQUIRE, KSSTATE_PAUSE, KSSTATE_RUN] {
            assert_eq!(self.set_state(s), STATUS_SUCCESS);
        }
    }
    pub fn stop(&self) {
        for s in [KSSTATE_PAUSE, KSSTATE_ACQUIRE, KSSTATE_STOP] {
            assert_eq!(self.set_state(s), STATUS_SUCCESS);
        }
    }
    pub fn position(&self) -> KSAUDIO_POSITION {
        let mut p = KSAUDIO_POSITION::default();
        // SAFETY: live stream, writable position.
        let status = unsafe { (self.v().base__.GetPosition)(self.0.this(), &raw mut p) };
        assert_eq!(status, STATUS_SUCCESS);
        p
    }
    pub fn register(&self, event: portcls_sys::PKEVENT) -> NTSTATUS {
        // SAFETY: live stream.
        unsafe { (self.v().RegisterNotificationEvent)(self.0.this(), event) }
    }
    pub fn unregister(&self, event: portcls_sys::PKEVENT) -> NTSTATUS {
        // SAFETY: live stream.
        unsafe { (self.v().UnregisterNotificationEvent)(self.0.this(), event) }
    }
    pub fn set_format(&self, format: &[u8]) -> NTSTATUS {
        let mut f = AlignedFormat::new(format);
        // SAFETY: live stream, a whole format.
        unsafe { (self.v().base__.SetFormat)(self.0.this(), f.ptr()) }
    }
    pub fn registers(&self) -> (NTSTATUS, NTSTATUS) {
        let mut r = std::mem::MaybeUninit::<KSRTAUDIO_HWREGISTER>::zeroed();
        // SAFETY: live stream, writable register.
        let a = unsafe { (self.v().base__.GetPositionRegister)(self.0.this(), r.as_mut_ptr()) };
        // SAFETY: as above.
        let b = unsafe { (self.v().base__.GetClockRegister)(self.0.this(), r.as_mut_ptr()) };
        (a, b)
    }
}
