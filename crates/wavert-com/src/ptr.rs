//! `ComPtr`: a counted reference to a COM interface.

use core::ffi::c_void;
use core::fmt;
use core::ptr::{self, NonNull};

use portcls_sys as sys;
use portcls_sys::{IUnknown, IUnknownVtbl, GUID, PVOID};

use crate::{NtResult, NtStatus};

/// A COM interface type of `portcls-sys`: `#[repr(C)] { lpVtbl }` whose
/// vtable starts with the `IUnknown` slots.
///
/// # Safety
///
/// `Self` must be such an interface struct, `Vtbl` its vtable type (which
/// begins with an `IUnknownVtbl`) and `IID` its interface id.
pub unsafe trait Interface: Sized {
    /// The vtable type.
    type Vtbl;
    /// The interface id `QueryInterface` answers.
    const IID: GUID;
}

macro_rules! interfaces {
    ($($i:ident $v:ident $iid:ident),* $(,)?) => {$(
        // SAFETY: `portcls-sys` declares each as `{ lpVtbl }` with an
        // IUnknown-first vtable; the IID is the interface's own.
        unsafe impl Interface for sys::$i {
            type Vtbl = sys::$v;
            const IID: GUID = sys::$iid;
        }
    )*};
}

interfaces!(
    IUnknown IUnknownVtbl IID_IUnknown,
    IResourceList IResourceListVtbl IID_IResourceList,
    IInterruptSync IInterruptSyncVtbl IID_IInterruptSync,
    IPort IPortVtbl IID_IPort,
    IPortWaveRT IPortWaveRTVtbl IID_IPortWaveRT,
    IPortTopology IPortTopologyVtbl IID_IPortTopology,
    IPortWaveRTStream IPortWaveRTStreamVtbl IID_IPortWaveRTStream,
    IMiniport IMiniportVtbl IID_IMiniport,
    IMiniportWaveRT IMiniportWaveRTVtbl IID_IMiniportWaveRT,
    IMiniportTopology IMiniportTopologyVtbl IID_IMiniportTopology,
    IMiniportWaveRTStream IMiniportWaveRTStreamVtbl IID_IMiniportWaveRTStream,
    IMiniportWaveRTStreamNotification IMiniportWaveRTStreamNotificationVtbl IID_IMiniportWaveRTStreamNotification,
    IMiniportWaveRTInputStream IMiniportWaveRTInputStreamVtbl IID_IMiniportWaveRTInputStream,
    IMiniportWaveRTOutputStream IMiniportWaveRTOutputStreamVtbl IID_IMiniportWaveRTOutputStream,
    IAdapterPowerManagement IAdapterPowerManagementVtbl IID_IAdapterPowerManagement,
    IAdapterPowerManagement2 IAdapterPowerManagement2Vtbl IID_IAdapterPowerManagement2,
    IPowerNotify IPowerNotifyVtbl IID_IPowerNotify,
    IUnregisterSubdevice IUnregisterSubdeviceVtbl IID_IUnregisterSubdevice,
    IUnregisterPhysicalConnection IUnregisterPhysicalConnectionVtbl IID_IUnregisterPhysicalConnection,
    IMiniportAudioSignalProcessing IMiniportAudioSignalProcessingVtbl IID_IMiniportAudioSignalProcessing,
);

/// One counted reference to a COM interface: `AddRef` on clone, `Release`
/// on drop.
pub struct ComPtr<I: Interface> {
    ptr: NonNull<I>,
}

// SAFETY: PortCls objects are free-threaded: their reference counts are
// atomic and their methods may be called from any thread.
unsafe impl<I: Interface> Send for ComPtr<I> {}
// SAFETY: as above; `&ComPtr` only allows calls the object must serialise itself.
unsafe impl<I: Interface> Sync for ComPtr<I> {}

impl<I: Interface> ComPtr<I> {
    /// Takes over a reference the caller owns (e.g. an `out` parameter
    /// filled by `QueryInterface`). `None` for a null pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must be null or a live `I` on which the caller owns one
    /// reference, which passes to the `ComPtr`.
    pub unsafe fn from_raw(ptr: *mut I) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Self { ptr })
    }

    /// Takes a new reference (`AddRef`) to an interface the caller only
    /// borrows (e.g. an `in` parameter). `None` for a null pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must be null or a live `I`.
    pub unsafe fn from_raw_borrowed(ptr: *mut I) -> Option<Self> {
        // The new `ComPtr` takes the reference added right below.
        let new = Self {
            ptr: NonNull::new(ptr)?,
        };
        let add_ref = new.unknown().AddRef;
        // SAFETY: `ptr` is a live interface (caller).
        unsafe { add_ref(new.this()) };
        Some(new)
    }

    /// The `IUnknown` part of the vtable.
    const fn unknown(&self) -> &IUnknownVtbl {
        // SAFETY: `self` keeps a live `{ lpVtbl }` interface.
        let vtbl = unsafe { (*self.ptr.as_ptr().cast::<IUnknown>()).lpVtbl };
        // SAFETY: every `Interface`'s vtable starts with the IUnknown slots and outlives the object.
        unsafe { &*vtbl }
    }

    /// The interface pointer, still owned by `self`.
    #[must_use]
    pub const fn as_raw(&self) -> *mut I {
        self.ptr.as_ptr()
    }

    /// The interface pointer as the `this` of its vtable slots.
    #[must_use]
    pub const fn this(&self) -> *mut c_void {
        self.ptr.as_ptr().cast()
    }

    /// Gives the reference back to the caller as a raw pointer.
    #[must_use]
    pub const fn into_raw(self) -> *mut I {
        let ptr = self.ptr.as_ptr();
        core::mem::forget(self);
        ptr
    }

    /// The interface's vtable, to call its slots (with [`ComPtr::this`]).
    #[must_use]
    pub const fn vtbl(&self) -> &I::Vtbl {
        // SAFETY: `self` keeps a live `{ lpVtbl }` interface.
        let vtbl = unsafe { *self.ptr.as_ptr().cast::<*const I::Vtbl>() };
        // SAFETY: an interface's `lpVtbl` points to its vtable, which outlives the object.
        unsafe { &*vtbl }
    }

    /// Asks the object for another of its interfaces.
    ///
    /// # Errors
    ///
    /// The object's `QueryInterface` status, e.g. `STATUS_NOINTERFACE`.
    pub fn query<J: Interface>(&self) -> NtResult<ComPtr<J>> {
        let mut out: PVOID = ptr::null_mut();
        let qi = self.unknown().QueryInterface;
        // SAFETY: `self` is live; `out` and the IID outlive the call.
        let status = unsafe { qi(self.this(), &J::IID, &raw mut out) };
        NtStatus::check(status)?;
        // SAFETY: a successful QueryInterface hands us one reference to a `J`.
        unsafe { ComPtr::from_raw(out.cast::<J>()) }.ok_or(NtStatus::NOINTERFACE)
    }
}

impl<I: Interface> Clone for ComPtr<I> {
    fn clone(&self) -> Self {
        let add_ref = self.unknown().AddRef;
        // SAFETY: `self` is live.
        unsafe { add_ref(self.this()) };
        Self { ptr: self.ptr }
    }
}

impl<I: Interface> Drop for ComPtr<I> {
    fn drop(&mut self) {
        let release = self.unknown().Release;
        // SAFETY: `self` owns one reference, given back here.
        unsafe { release(self.this()) };
    }
}

impl<I: Interface> fmt::Debug for ComPtr<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ComPtr").field(&self.ptr).finish()
    }
}
