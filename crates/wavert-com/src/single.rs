//! Objects with one interface, at offset 0: the shape of every port-side
//! object the emulator builds and of the test doubles beside the miniport
//! (a fake `IPortWaveRTStream`), on the same [`ComObject`] layout, counting
//! and `QueryInterface` as the miniport's own objects.

use core::ffi::c_void;
use core::ptr;

use portcls_sys::GUID;

use crate::object::{ComClass, ComObject};
use crate::ptr::{ComPtr, Interface};
use crate::NtStatus;

/// A COM class whose objects have exactly one interface pointer.
///
/// # Safety
///
/// `VTBL` must be a `#[repr(C)]` vtable whose first member is the
/// `IUnknown` part built by <code>[crate::unknown_vtbl]::<Self, 0>()</code>, and every
/// interface id in `IIDS` must name an interface whose vtable `VTBL` is or
/// begins with (`IID_IUnknown` always qualifies).
pub unsafe trait SingleInterface: Send + Sync + 'static {
    /// The vtable type.
    type Vtbl: 'static;
    /// The vtable (a `'static` reference: a generic `&T::VTBL` would not be
    /// promoted and would dangle).
    const VTBL: &'static Self::Vtbl;
    /// Interface ids `QueryInterface` answers with the one interface.
    const IIDS: &'static [GUID];
}

/// The interface pointers of a [`SingleInterface`] object: its vtable.
#[repr(C)]
pub struct OneInterface(*const c_void);

// SAFETY: `OneInterface` is one vtable pointer, at offset 0; the vtable's
// IUnknown part is `unknown_vtbl::<Self, 0>()` and `IIDS` only names
// interfaces that vtable serves (`SingleInterface`'s contract), and `query`
// only answers offset 0.
unsafe impl<T: SingleInterface> ComClass for T {
    type Interfaces = OneInterface;

    fn interfaces() -> OneInterface {
        OneInterface(ptr::from_ref(T::VTBL).cast())
    }

    fn query(&self, iid: &GUID) -> Option<usize> {
        T::IIDS.contains(iid).then_some(0)
    }
}

/// A new object holding `value`, with one reference, owned by the returned
/// pointer.
///
/// # Errors
///
/// `STATUS_INSUFFICIENT_RESOURCES` when the allocation fails.
pub fn new_single<T, I>(value: T) -> Result<ComPtr<I>, NtStatus>
where
    T: SingleInterface,
    I: Interface<Vtbl = T::Vtbl>,
{
    let object = ComObject::create(value)?;
    // SAFETY: a new object whose only interface (offset 0) has `I`'s
    // vtable type, with one reference that passes to the `ComPtr`.
    unsafe { ComPtr::from_raw(object.as_ptr().cast::<I>()) }.ok_or(NtStatus::UNSUCCESSFUL)
}

/// The value of the object behind `this`.
///
/// # Safety
///
/// `this` must be the interface pointer of a live object of `T` (the
/// `this` a slot of `T::VTBL` is called with), and the object must outlive
/// `'a`.
pub unsafe fn single_value<'a, T: SingleInterface>(this: *mut c_void) -> &'a T {
    // SAFETY: guaranteed by the caller (offset 0: `T` has one interface).
    unsafe { ComObject::<T>::from_this::<0>(this) }.value()
}
