//! The object layout, reference counting and `QueryInterface`.

use alloc::alloc::{alloc, dealloc, Layout};
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{fence, AtomicU32, Ordering};
use portcls_sys::windows_abi;

use portcls_sys::{
    IUnknownVtbl, GUID, NTSTATUS, PVOID, REFIID, STATUS_INVALID_PARAMETER, STATUS_NOINTERFACE,
    STATUS_SUCCESS, ULONG,
};

use crate::NtStatus;

/// A Rust value that is the body of a COM object.
///
/// # Safety
///
/// `Interfaces` must be a `#[repr(C)]` struct of vtable pointers only, each
/// vtable's `IUnknown` part built by [`unknown_vtbl`] with `Self` and the
/// byte offset of that pointer inside `Interfaces`; and [`ComClass::query`]
/// must only return such offsets, for interfaces whose vtable the pointer at
/// that offset really is.
pub unsafe trait ComClass: Sized + Send + Sync + 'static {
    /// The interface pointers at the start of the object.
    type Interfaces: 'static;
    /// The interface pointers of a new object.
    fn interfaces() -> Self::Interfaces;
    /// The byte offset (in `Interfaces`) of the interface answering `iid`,
    /// or `None` if the object does not support it.
    fn query(&self, iid: &GUID) -> Option<usize>;
}

/// The pinned object: interface pointers first, so that an interface
/// pointer handed out is a pointer into this block.
#[repr(C)]
pub struct ComObject<C: ComClass> {
    interfaces: C::Interfaces,
    refs: AtomicU32,
    value: C,
}

impl<C: ComClass> ComObject<C> {
    /// Allocates an object holding `value` with one reference, and returns
    /// the pointer to its first interface.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` when the allocation fails.
    pub fn create(value: C) -> Result<NonNull<c_void>, NtStatus> {
        let layout = Layout::new::<Self>();
        // SAFETY: `Self` is never zero-sized: it holds at least the counter.
        let raw = unsafe { alloc(layout) }.cast::<Self>();
        let Some(obj) = NonNull::new(raw) else {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        let init = Self {
            interfaces: C::interfaces(),
            refs: AtomicU32::new(1),
            value,
        };
        // SAFETY: `obj` is a fresh allocation of `Self`'s layout.
        unsafe { obj.as_ptr().write(init) };
        Ok(obj.cast())
    }

    /// The object behind an interface pointer found at byte `OFF`.
    ///
    /// # Safety
    ///
    /// `this` must be the interface pointer at offset `OFF` of a live
    /// `ComObject<C>`.
    pub unsafe fn from_this<'a, const OFF: usize>(this: *mut c_void) -> &'a Self {
        // SAFETY: the caller guarantees `this` lies `OFF` bytes into the object.
        let obj = unsafe { Self::raw_from_this::<OFF>(this) };
        // SAFETY: the object is live (caller).
        unsafe { &*obj }
    }

    /// The object pointer behind an interface pointer found at byte `OFF`,
    /// keeping the provenance of `this` (which may free the object).
    ///
    /// # Safety
    ///
    /// `this` must be the interface pointer at offset `OFF` of a `ComObject<C>`.
    const unsafe fn raw_from_this<const OFF: usize>(this: *mut c_void) -> *mut Self {
        // SAFETY: the caller guarantees `this` lies `OFF` bytes into the object.
        unsafe { this.byte_sub(OFF) }.cast::<Self>()
    }

    /// The Rust value.
    pub const fn value(&self) -> &C {
        &self.value
    }

    fn add_ref(&self) -> ULONG {
        self.refs.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// Drops one reference; frees the object after the last.
    ///
    /// # Safety
    ///
    /// `obj` must be a live object on which the caller owns a reference.
    unsafe fn release(obj: *mut Self) -> ULONG {
        // SAFETY: the caller owns a reference, so the object is alive.
        let before = unsafe { &(*obj).refs }.fetch_sub(1, Ordering::Release);
        if before != 1 {
            return before.wrapping_sub(1);
        }
        fence(Ordering::Acquire);
        // SAFETY: that was the last reference: nobody else can reach the object.
        unsafe { ptr::drop_in_place(obj) };
        // SAFETY: `obj` came from `alloc` with this layout in `create`.
        unsafe { dealloc(obj.cast(), Layout::new::<Self>()) };
        0
    }
}

#[windows_abi]
unsafe extern "system" fn query_interface<C: ComClass, const OFF: usize>(
    this: *mut c_void,
    iid: REFIID,
    out: *mut PVOID,
) -> NTSTATUS {
    if out.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    if iid.is_null() {
        // SAFETY: `out` is non-null and points to a writable pointer (COM rule).
        unsafe { out.write(ptr::null_mut()) };
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: this vtable is only installed at offset OFF of a `ComObject<C>`.
    let obj = unsafe { ComObject::<C>::from_this::<OFF>(this) };
    // SAFETY: `iid` is non-null and points to a GUID (COM rule).
    let iid = unsafe { &*iid };
    #[allow(clippy::option_if_let_else, clippy::single_match_else)]
    // Two arms, each with its SAFETY notes.
    match obj.value.query(iid) {
        Some(off) => {
            obj.add_ref();
            // SAFETY: this vtable is only installed at offset OFF of a `ComObject<C>`.
            let base = unsafe { ComObject::<C>::raw_from_this::<OFF>(this) }.cast::<u8>();
            // SAFETY: `ComClass` guarantees `off` is inside `Interfaces`, at the object's start.
            let iface = unsafe { base.add(off) };
            // SAFETY: `out` is non-null and writable.
            unsafe { out.write(iface.cast()) };
            STATUS_SUCCESS
        }
        None => {
            // SAFETY: `out` is non-null and writable.
            unsafe { out.write(ptr::null_mut()) };
            STATUS_NOINTERFACE
        }
    }
}

#[windows_abi]
unsafe extern "system" fn add_ref<C: ComClass, const OFF: usize>(this: *mut c_void) -> ULONG {
    // SAFETY: this vtable is only installed at offset OFF of a `ComObject<C>`.
    unsafe { ComObject::<C>::from_this::<OFF>(this) }.add_ref()
}

#[windows_abi]
unsafe extern "system" fn release<C: ComClass, const OFF: usize>(this: *mut c_void) -> ULONG {
    // SAFETY: this vtable is only installed at offset OFF of a `ComObject<C>`.
    let obj = unsafe { ComObject::<C>::raw_from_this::<OFF>(this) };
    // SAFETY: the caller of `Release` gives up the reference it owns.
    unsafe { ComObject::release(obj) }
}

/// The `IUnknown` part of a vtable for the interface at byte `OFF` of a
/// `ComObject<C>`.
#[must_use]
pub const fn unknown_vtbl<C: ComClass, const OFF: usize>() -> IUnknownVtbl {
    IUnknownVtbl {
        QueryInterface: query_interface::<C, OFF>,
        AddRef: add_ref::<C, OFF>,
        Release: release::<C, OFF>,
    }
}
