//! A cyclic buffer over non-contiguous physical pages.
//!
//! The buffer is `size` bytes starting `first_page_offset` bytes into the
//! first page of a page list (any order, any page-aligned addresses). Byte
//! `n` of the buffer lives at byte `first_page_offset + n` of the virtual run
//! formed by the pages in list order.

/// Size of a page: the granularity of `GetPhysicalPageAddress`.
pub const PAGE_SIZE: u32 = 4096;
const PAGE_SIZE_U64: u64 = PAGE_SIZE as u64;

/// Why a page list or a query was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// Buffer size 0.
    ZeroSize,
    /// Offset into the first page not below [`PAGE_SIZE`].
    FirstOffsetTooLarge(u32),
    /// Fewer pages than offset + size needs.
    NotEnoughPages {
        /// Pages needed.
        needed: usize,
        /// Pages given.
        given: usize,
    },
    /// A page address not a multiple of [`PAGE_SIZE`].
    PageNotAligned {
        /// Index in the page list.
        index: usize,
        /// Its address.
        address: u64,
    },
    /// A page whose end would pass 2^64.
    PageAddressOverflow {
        /// Index in the page list.
        index: usize,
    },
    /// A byte offset at or beyond the buffer size.
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u32,
        /// The buffer size.
        size: u32,
    },
    /// A range longer than the buffer.
    RangeTooLong {
        /// Length asked for.
        len: u32,
        /// The buffer size.
        size: u32,
    },
}

/// Where one byte of the buffer lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Index in the page list.
    pub page_index: usize,
    /// Offset within that page.
    pub page_offset: u32,
    /// Physical address of the byte.
    pub physical: u64,
}

/// A physically contiguous piece of the buffer, never crossing a page end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysicalRun {
    /// Offset of the run's first byte in the cyclic buffer.
    pub buffer_offset: u32,
    /// Physical address of that byte.
    pub physical: u64,
    /// Length in bytes (1..=4096).
    pub len: u32,
}

/// The cyclic buffer's layout. Borrowing the page list keeps lookups free of
/// allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyclicBuffer<'a> {
    pages: &'a [u64],
    first_page_offset: u32,
    size: u32,
}

impl<'a> CyclicBuffer<'a> {
    /// Checks and wraps a page list. Extra pages beyond what the buffer needs
    /// are allowed (and ignored).
    ///
    /// # Errors
    /// [`GeometryError::ZeroSize`], [`GeometryError::FirstOffsetTooLarge`],
    /// [`GeometryError::NotEnoughPages`], [`GeometryError::PageNotAligned`],
    /// [`GeometryError::PageAddressOverflow`].
    pub fn new(pages: &'a [u64], first_page_offset: u32, size: u32) -> Result<Self, GeometryError> {
        if size == 0 {
            return Err(GeometryError::ZeroSize);
        }
        if first_page_offset >= PAGE_SIZE {
            return Err(GeometryError::FirstOffsetTooLarge(first_page_offset));
        }
        let span = u64::from(first_page_offset) + u64::from(size);
        let needed = usize::try_from(span.div_ceil(PAGE_SIZE_U64)).unwrap_or(usize::MAX);
        if pages.len() < needed {
            return Err(GeometryError::NotEnoughPages {
                needed,
                given: pages.len(),
            });
        }
        let used = pages.get(..needed).unwrap_or(pages);
        for (index, &address) in used.iter().enumerate() {
            if address % PAGE_SIZE_U64 != 0 {
                return Err(GeometryError::PageNotAligned { index, address });
            }
            if address.checked_add(PAGE_SIZE_U64).is_none() {
                return Err(GeometryError::PageAddressOverflow { index });
            }
        }
        Ok(Self {
            pages: used,
            first_page_offset,
            size,
        })
    }

    /// Buffer size in bytes.
    #[must_use]
    pub const fn size(&self) -> u32 {
        self.size
    }

    /// The pages the buffer uses.
    #[must_use]
    pub const fn pages(&self) -> &'a [u64] {
        self.pages
    }

    /// Offset of byte 0 in the first page.
    #[must_use]
    pub const fn first_page_offset(&self) -> u32 {
        self.first_page_offset
    }

    /// Where byte `offset` of the buffer lives.
    ///
    /// # Errors
    /// [`GeometryError::OffsetOutOfRange`] for `offset >= size`.
    pub fn locate(&self, offset: u32) -> Result<Location, GeometryError> {
        if offset >= self.size {
            return Err(GeometryError::OffsetOutOfRange {
                offset,
                size: self.size,
            });
        }
        let virt = u64::from(self.first_page_offset) + u64::from(offset);
        let page_index = usize::try_from(virt / PAGE_SIZE_U64).unwrap_or(usize::MAX);
        // virt % 4096 < 4096 always fits.
        let page_offset = u32::try_from(virt % PAGE_SIZE_U64).unwrap_or(0);
        let base = *self
            .pages
            .get(page_index)
            .ok_or(GeometryError::OffsetOutOfRange {
                offset,
                size: self.size,
            })?;
        Ok(Location {
            page_index,
            page_offset,
            // Checked in `new`: base + 4096 does not overflow.
            physical: base.wrapping_add(u64::from(page_offset)),
        })
    }

    /// The physical runs covering `len` bytes from `start`, wrapping at the
    /// end of the buffer. Each run stops at a page end or at the wrap point.
    ///
    /// # Errors
    /// [`GeometryError::OffsetOutOfRange`] or [`GeometryError::RangeTooLong`].
    pub const fn runs(&self, start: u32, len: u32) -> Result<Runs<'a>, GeometryError> {
        if start >= self.size {
            return Err(GeometryError::OffsetOutOfRange {
                offset: start,
                size: self.size,
            });
        }
        if len > self.size {
            return Err(GeometryError::RangeTooLong {
                len,
                size: self.size,
            });
        }
        Ok(Runs {
            buffer: *self,
            offset: start,
            remaining: len,
        })
    }

    /// The runs holding frame `frame` of `block_align` bytes (two runs when
    /// the frame straddles a page boundary).
    ///
    /// # Errors
    /// [`GeometryError::OffsetOutOfRange`] when the frame is not wholly inside
    /// the buffer.
    pub fn frame_runs(&self, frame: u32, block_align: u32) -> Result<Runs<'a>, GeometryError> {
        let start = u64::from(frame) * u64::from(block_align);
        let end = start + u64::from(block_align);
        if block_align == 0 || end > u64::from(self.size) {
            return Err(GeometryError::OffsetOutOfRange {
                offset: u32::try_from(start).unwrap_or(u32::MAX),
                size: self.size,
            });
        }
        // start < end <= size fits u32.
        self.runs(u32::try_from(start).unwrap_or(u32::MAX), block_align)
    }
}

/// Iterator over [`PhysicalRun`]s (see [`CyclicBuffer::runs`]).
#[derive(Clone, Debug)]
pub struct Runs<'a> {
    buffer: CyclicBuffer<'a>,
    offset: u32,
    remaining: u32,
}

impl Iterator for Runs<'_> {
    type Item = PhysicalRun;

    fn next(&mut self) -> Option<PhysicalRun> {
        if self.remaining == 0 {
            return None;
        }
        let loc = self.buffer.locate(self.offset).ok()?;
        let to_page_end = PAGE_SIZE - loc.page_offset;
        let to_wrap = self.buffer.size - self.offset;
        let len = self.remaining.min(to_page_end).min(to_wrap);
        let run = PhysicalRun {
            buffer_offset: self.offset,
            physical: loc.physical,
            len,
        };
        self.remaining -= len;
        self.offset += len;
        if self.offset == self.buffer.size {
            self.offset = 0;
        }
        Some(run)
    }
}
