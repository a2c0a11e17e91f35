//! The boundary to the memory and services the port stream gives a stream:
//! the mapped cyclic buffer, its MDL, the set of registered notification
//! events, and calls through the `IPortWaveRTStream` vtable.

use core::ptr::NonNull;

use portcls_sys::{IPortWaveRTStream, MDL, MEMORY_CACHING_TYPE, PHYSICAL_ADDRESS, PMDL};
use wavert_com::{ComPtr, KernelEvent, NtResult, NtStatus};
use wavert_core::bus::{DmaMemory, DmaMemoryRead};

/// The memory descriptor list of an allocated buffer.
///
/// # Invariants
///
/// Owns one allocation of its port stream: it is neither `Copy` nor
/// `Clone`, and [`PortStream::free_pages`] consumes it, so the pages are
/// freed at most once and never used after.
#[derive(Debug, PartialEq, Eq)]
pub struct Mdl(NonNull<MDL>);

// SAFETY: an MDL pointer is an opaque handle the miniport only hands back to
// the port stream that made it; the port serialises its own use of it.
unsafe impl Send for Mdl {}
// SAFETY: as above; `&Mdl` gives no access to the MDL's contents.
unsafe impl Sync for Mdl {}

impl Mdl {
    /// The raw pointer, for the port.
    #[must_use]
    pub const fn as_raw(&self) -> PMDL {
        self.0.as_ptr()
    }

    /// Gives the MDL up (to the port, which frees it).
    const fn into_raw(self) -> PMDL {
        self.0.as_ptr()
    }
}

/// Most notification events one stream may register.
pub const MAX_EVENTS: usize = 4;

/// The notification events registered on one stream's buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotificationEvents([Option<KernelEvent>; MAX_EVENTS]);

impl NotificationEvents {
    /// No event registered.
    #[must_use]
    pub const fn new() -> Self {
        Self([None; MAX_EVENTS])
    }

    /// `RegisterNotificationEvent`: a second registration of the same event
    /// is accepted once.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` when [`MAX_EVENTS`] are registered.
    pub fn register(&mut self, event: KernelEvent) -> NtResult<()> {
        if self.0.contains(&Some(event)) {
            return Ok(());
        }
        let free = self
            .0
            .iter_mut()
            .find(|e| e.is_none())
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        *free = Some(event);
        Ok(())
    }

    /// `UnregisterNotificationEvent`.
    ///
    /// # Errors
    ///
    /// `STATUS_NOT_FOUND` for an event that is not registered.
    pub fn unregister(&mut self, event: KernelEvent) -> NtResult<()> {
        let slot = self
            .0
            .iter_mut()
            .find(|e| **e == Some(event))
            .ok_or(NtStatus::NOT_FOUND)?;
        *slot = None;
        Ok(())
    }

    /// `RegisterNotificationEvent` on a stream's buffer: only with a
    /// buffer allocated with notifications.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` without one; [`Self::register`]'s.
    pub fn register_on_buffer(
        &mut self,
        has_buffer: bool,
        notifications: u32,
        event: KernelEvent,
    ) -> NtResult<()> {
        if !has_buffer || notifications == 0 {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        self.register(event)
    }

    /// `UnregisterNotificationEvent` on a stream's buffer: without one
    /// there is nothing to unregister (freeing it dropped the
    /// registrations; ReactOS's close frees the buffer first), a success.
    ///
    /// # Errors
    ///
    /// [`Self::unregister`]'s.
    pub fn unregister_on_buffer(&mut self, has_buffer: bool, event: KernelEvent) -> NtResult<()> {
        if has_buffer {
            self.unregister(event)
        } else {
            Ok(())
        }
    }

    /// The registered events.
    pub fn iter(&self) -> impl Iterator<Item = KernelEvent> + '_ {
        self.0.iter().flatten().copied()
    }
}

/// The kernel mapping of a stream's cyclic buffer (`MapAllocatedPages`).
///
/// The port maps the same pages for the client, who reads or writes them at
/// any time: the bytes are shared with another party, like any DMA buffer,
/// so they are only ever touched through raw pointer copies, never through
/// Rust references.
#[derive(Debug)]
pub struct Mapping {
    base: NonNull<u8>,
    len: u32,
}

// SAFETY: the mapping is kernel virtual memory valid on every processor; all
// accesses are raw copies bounded by `len` (see `copy_to` and `zero`).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Wraps a mapping of `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be valid for reads and writes of `len` bytes until the
    /// `Mapping` is dropped (the owner unmaps only after dropping it).
    #[must_use]
    pub const unsafe fn new(base: NonNull<u8>, len: u32) -> Self {
        Self { base, len }
    }

    /// Gives up the mapping and returns its base address, for
    /// `UnmapAllocatedPages`: consuming it guarantees nothing here can reach
    /// the pages after they are unmapped.
    #[must_use]
    pub const fn into_base(self) -> NonNull<u8> {
        self.base
    }

    fn range(&self, offset: u32, len: u32) -> Option<NonNull<u8>> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: offset + len <= self.len, so the result stays inside the mapping.
        Some(unsafe { self.base.add(offset as usize) })
    }

    /// Copies `len` bytes from `self[src_offset..]` to `dst[dst_offset..]`.
    /// Returns `false` (copying nothing) when either range is out of bounds.
    #[must_use]
    pub fn copy_to(&self, src_offset: u32, dst: &Self, dst_offset: u32, len: u32) -> bool {
        let (Some(src), Some(dst)) = (self.range(src_offset, len), dst.range(dst_offset, len))
        else {
            return false;
        };
        // SAFETY: both ranges lie inside live mappings (checked above); `copy`
        // tolerates overlap should a caller ever pass the same buffer.
        unsafe { core::ptr::copy(src.as_ptr(), dst.as_ptr(), len as usize) };
        true
    }

    /// Copies `bytes` into the mapping at `offset`. Returns `false`
    /// (writing nothing) when out of bounds.
    #[must_use]
    pub fn write(&self, offset: u32, bytes: &[u8]) -> bool {
        let Ok(len) = u32::try_from(bytes.len()) else {
            return false;
        };
        let Some(dst) = self.range(offset, len) else {
            return false;
        };
        // SAFETY: the range lies inside the live mapping (checked above) and
        // `bytes` is a distinct Rust slice, so the two cannot overlap.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.as_ptr(), bytes.len()) };
        true
    }

    /// Copies `bytes.len()` bytes of the mapping at `offset` into `bytes`.
    /// Returns `false` (reading nothing) when out of bounds.
    #[must_use]
    pub fn read(&self, offset: u32, bytes: &mut [u8]) -> bool {
        let Ok(len) = u32::try_from(bytes.len()) else {
            return false;
        };
        let Some(src) = self.range(offset, len) else {
            return false;
        };
        // SAFETY: the range lies inside the live mapping (checked above) and
        // `bytes` is a distinct Rust slice, so the two cannot overlap.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), bytes.as_mut_ptr(), bytes.len()) };
        true
    }

    /// Mapping length in bytes.
    #[must_use]
    pub const fn len(&self) -> u32 {
        self.len
    }

    /// Whether the mapping is empty.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `len` zero bytes at `offset` (memory, or silence for every
    /// format but 8-bit PCM: [`Self::fill`]). Returns `false` (writing
    /// nothing) when out of bounds.
    #[must_use]
    pub fn zero(&self, offset: u32, len: u32) -> bool {
        self.fill(offset, len, 0)
    }

    /// Writes `len` bytes of `byte` at `offset` (a format's silence: 0, or
    /// 0x80 for unsigned 8-bit PCM). Returns `false` (writing nothing) when
    /// out of bounds.
    #[must_use]
    pub fn fill(&self, offset: u32, len: u32, byte: u8) -> bool {
        let Some(dst) = self.range(offset, len) else {
            return false;
        };
        // SAFETY: the range lies inside the live mapping (checked above).
        unsafe { core::ptr::write_bytes(dst.as_ptr(), byte, len as usize) };
        true
    }
}

impl Mapping {
    /// The address of `len` bytes at `offset` inside the mapping (for a
    /// register the port maps to the client, say), if they lie inside it.
    #[must_use]
    pub fn address_of(&self, offset: u32, len: u32) -> Option<NonNull<u8>> {
        self.range(offset, len)
    }
}

/// Physically contiguous device memory seen through its kernel mapping.
///
/// Physical addresses from `physical` on are offsets in `mapping`. It is the
/// [`DmaMemory`] / [`DmaMemoryRead`] the register-level back-ends write
/// descriptors and rings through and read responses and positions from.
/// Accesses outside the mapping write nothing and read zeros.
#[derive(Clone, Copy, Debug)]
pub struct PhysicalView<'a> {
    /// The kernel mapping.
    pub mapping: &'a Mapping,
    /// The physical address of its first byte.
    pub physical: u64,
}

impl PhysicalView<'_> {
    fn offset(&self, physical: u64) -> Option<u32> {
        physical
            .checked_sub(self.physical)
            .and_then(|o| u32::try_from(o).ok())
    }
}

impl DmaMemory for PhysicalView<'_> {
    fn write(&mut self, physical: u64, bytes: &[u8]) {
        if let Some(offset) = self.offset(physical) {
            let _written = self.mapping.write(offset, bytes);
        }
    }
}

impl DmaMemoryRead for PhysicalView<'_> {
    fn read(&mut self, physical: u64, out: &mut [u8]) {
        let done = self
            .offset(physical)
            .is_some_and(|offset| self.mapping.read(offset, out));
        if !done {
            out.fill(0);
        }
    }
}

/// The calls the miniport makes on its `IPortWaveRTStream`. All at
/// `PASSIVE_LEVEL`, as PortCls requires.
pub struct PortStream<'a>(pub &'a ComPtr<IPortWaveRTStream>);

impl PortStream<'_> {
    /// `AllocatePagesForMdl(HighAddress = all memory, bytes)`: non-contiguous
    /// pages (the cyclic buffer never needs contiguous memory). `None` when
    /// the port could not allocate anything.
    #[must_use]
    pub fn allocate_pages(&self, bytes: u32) -> Option<Mdl> {
        let high = PHYSICAL_ADDRESS { QuadPart: -1 };
        let f = self.0.vtbl().AllocatePagesForMdl;
        // SAFETY: the port stream is live (we hold a reference); by-value arguments.
        let mdl = unsafe { f(self.0.this(), high, bytes as usize) };
        NonNull::new(mdl).map(Mdl)
    }

    /// `AllocatePagesForMdl(HighAddress = high, bytes)`: non-contiguous
    /// pages at or below `high` (a 32-bit bus master passes `0xFFFF_FFFF`).
    #[must_use]
    pub fn allocate_pages_below(&self, high: u64, bytes: u32) -> Option<Mdl> {
        let high = PHYSICAL_ADDRESS {
            QuadPart: i64::try_from(high).unwrap_or(i64::MAX),
        };
        let f = self.0.vtbl().AllocatePagesForMdl;
        // SAFETY: the port stream is live (we hold a reference); by-value arguments.
        let mdl = unsafe { f(self.0.this(), high, bytes as usize) };
        NonNull::new(mdl).map(Mdl)
    }

    /// `AllocateContiguousPagesForMdl(low, high, bytes)`: physically
    /// contiguous pages between `low` and `high` (a descriptor list).
    #[must_use]
    pub fn allocate_contiguous(&self, low: u64, high: u64, bytes: u32) -> Option<Mdl> {
        let low = PHYSICAL_ADDRESS {
            QuadPart: i64::try_from(low).unwrap_or(0),
        };
        let high = PHYSICAL_ADDRESS {
            QuadPart: i64::try_from(high).unwrap_or(i64::MAX),
        };
        let f = self.0.vtbl().AllocateContiguousPagesForMdl;
        // SAFETY: the port stream is live (we hold a reference); by-value arguments.
        let mdl = unsafe { f(self.0.this(), low, high, bytes as usize) };
        NonNull::new(mdl).map(Mdl)
    }

    /// `GetPhysicalPagesCount`.
    #[must_use]
    pub fn page_count(&self, mdl: &Mdl) -> u32 {
        let f = self.0.vtbl().GetPhysicalPagesCount;
        // SAFETY: live port stream; the MDL came from this port stream.
        unsafe { f(self.0.this(), mdl.as_raw()) }
    }

    /// `GetPhysicalPageAddress(mdl, index)` through its hidden-return-pointer
    /// slot (see `portcls_sys::IPortWaveRTStreamVtbl::GetPhysicalPageAddress`).
    #[must_use]
    pub fn page_address(&self, mdl: &Mdl, index: u32) -> u64 {
        let mut result = PHYSICAL_ADDRESS::default();
        let f = self.0.vtbl().GetPhysicalPageAddress;
        // SAFETY: live port stream, its own MDL; `result` outlives the call.
        unsafe { f(self.0.this(), &raw mut result, mdl.as_raw(), index) };
        // Physical addresses are never negative; this reinterprets the bits.
        u64::from_ne_bytes(result.QuadPart.to_ne_bytes())
    }

    /// `MapAllocatedPages(mdl, cache)`: the kernel mapping, or `None`.
    #[must_use]
    pub fn map(&self, mdl: &Mdl, cache: MEMORY_CACHING_TYPE) -> Option<NonNull<u8>> {
        let f = self.0.vtbl().MapAllocatedPages;
        // SAFETY: live port stream, its own MDL.
        let va = unsafe { f(self.0.this(), mdl.as_raw(), cache) };
        NonNull::new(va.cast::<u8>())
    }

    /// `UnmapAllocatedPages(base, mdl)`.
    pub fn unmap(&self, base: NonNull<u8>, mdl: &Mdl) {
        let f = self.0.vtbl().UnmapAllocatedPages;
        // SAFETY: live port stream; `base` is the mapping `map` returned for this MDL.
        unsafe { f(self.0.this(), base.as_ptr().cast(), mdl.as_raw()) };
    }

    /// `FreePagesFromMdl(mdl)`: consumes the MDL, so it is freed once.
    pub fn free_pages(&self, mdl: Mdl) {
        let f = self.0.vtbl().FreePagesFromMdl;
        // SAFETY: live port stream; the MDL came from it and is freed once
        // (it is moved in here, and `Mdl` cannot be copied).
        unsafe { f(self.0.this(), mdl.into_raw()) };
    }
}
