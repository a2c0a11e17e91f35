//! The PE32+ loader: maps a kernel image into this process the way the
//! Windows loader maps a driver, so that its own instructions run here.
//!
//! [`load`] checks the headers, maps the image at an address of its own
//! choosing (never the preferred base, so relocations are always exercised),
//! copies each section to its RVA, applies the base relocations, binds every
//! import by module and name through a resolver, and only then gives each
//! section the page protection its characteristics ask for (code read +
//! execute, read-only data read-only, headers read-only). A malformed image
//! is an [`ImageError`], never a crash; an import nothing implements is one
//! error naming every missing `module!name`, before any of its code runs.
//!
//! The mapping lives until the process exits: the driver hands PortCls
//! pointers into its image (filter descriptors, names, vtables) that the
//! emulator keeps as `'static`, as the kernel keeps them until unload.

use std::ffi::c_void;
use std::fmt;
use std::ptr::NonNull;

use object::pe::{
    ImageNtHeaders64, IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_MACHINE_ARM64, IMAGE_REL_BASED_ABSOLUTE,
    IMAGE_REL_BASED_DIR64, IMAGE_SCN_MEM_EXECUTE, IMAGE_SCN_MEM_READ, IMAGE_SCN_MEM_WRITE,
};
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, Import, PeFile64};
use object::LittleEndian as LE;

/// The page size of the host and of an x64 Windows image's sections.
const PAGE: usize = 4096;

/// Why an image was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// The file is not a well-formed PE32+ image of the kind a driver is.
    Malformed(String),
    /// Imports that no stand-in implements, as `module!name`, all of them.
    MissingImports(Vec<String>),
    /// The host refused memory or protections.
    Host(String),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed image: {why}"),
            Self::MissingImports(names) => write!(
                f,
                "the image imports {} function(s) nothing here implements: {}",
                names.len(),
                names.join(", ")
            ),
            Self::Host(why) => write!(f, "host: {why}"),
        }
    }
}

impl std::error::Error for ImageError {}

fn malformed(why: impl fmt::Display) -> ImageError {
    ImageError::Malformed(why.to_string())
}

/// One bound import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundImport {
    /// The module, as the image names it (`ntoskrnl.exe`).
    pub module: String,
    /// The function.
    pub name: String,
    /// The address it was bound to.
    pub address: usize,
}

/// A section as mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedSection {
    /// Its name (`.text`).
    pub name: String,
    /// Its RVA.
    pub rva: u32,
    /// Its size in memory.
    pub size: u32,
    /// The protection given (`"r-x"`, `"r--"`, `"rw-"`).
    pub protection: &'static str,
}

/// A driver image mapped into this process, relocated and bound.
#[derive(Debug)]
pub struct LoadedImage {
    base: NonNull<u8>,
    size: usize,
    entry_rva: u32,
    preferred_base: u64,
    stored_checksum: u32,
    imports: Vec<BoundImport>,
    sections: Vec<MappedSection>,
}

// SAFETY: the mapping is process-wide memory that never moves or goes away;
// the struct only records where it is.
unsafe impl Send for LoadedImage {}
// SAFETY: as above; nothing in the struct is mutated after `load`.
unsafe impl Sync for LoadedImage {}

impl LoadedImage {
    /// Where the image was mapped.
    #[must_use]
    pub fn base(&self) -> usize {
        self.base.as_ptr().addr()
    }

    /// Bytes mapped (`SizeOfImage`).
    #[must_use]
    pub const fn size(&self) -> usize {
        self.size
    }

    /// The entry point's address (`AddressOfEntryPoint`, `DriverEntry`).
    #[must_use]
    pub const fn entry(&self) -> *const c_void {
        self.base
            .as_ptr()
            .wrapping_add(self.entry_rva as usize)
            .cast_const()
            .cast()
    }

    /// The base the linker chose (the loader always maps elsewhere).
    #[must_use]
    pub const fn preferred_base(&self) -> u64 {
        self.preferred_base
    }

    /// The optional header's `CheckSum` as the file stores it.
    #[must_use]
    pub const fn stored_checksum(&self) -> u32 {
        self.stored_checksum
    }

    /// Every import and where it was bound.
    #[must_use]
    pub fn imports(&self) -> &[BoundImport] {
        &self.imports
    }

    /// The sections and their protections.
    #[must_use]
    pub fn sections(&self) -> &[MappedSection] {
        &self.sections
    }
}

/// An anonymous private mapping, unmapped on drop unless kept.
struct Mapping {
    base: NonNull<u8>,
    size: usize,
}

impl Mapping {
    fn new(size: usize) -> Result<Self, ImageError> {
        // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(ImageError::Host(format!(
                "mmap of {size} bytes: {}",
                std::io::Error::last_os_error()
            )));
        }
        NonNull::new(address.cast::<u8>())
            .map(|base| Self { base, size })
            .ok_or_else(|| ImageError::Host("mmap returned NULL".to_owned()))
    }

    /// The mapping as bytes, while it is still writable (before `protect`).
    const fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `size` bytes from `base` are mapped read-write and owned by
        // this struct; the borrow of `self` keeps anyone else out.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.size) }
    }

    fn protect(&self, offset: usize, length: usize, protection: i32) -> Result<(), ImageError> {
        if length == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside our own mapping (callers pass page-aligned
        // offsets within `size`); changing its protection affects nothing else.
        let status = unsafe {
            libc::mprotect(
                self.base.as_ptr().wrapping_add(offset).cast(),
                length,
                protection,
            )
        };
        if status == 0 {
            Ok(())
        } else {
            Err(ImageError::Host(format!(
                "mprotect: {}",
                std::io::Error::last_os_error()
            )))
        }
    }

    /// Keeps the mapping for the rest of the process.
    const fn keep(self) -> (NonNull<u8>, usize) {
        let kept = (self.base, self.size);
        std::mem::forget(self);
        kept
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; nothing points into it (an
        // image that failed to load never ran).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.size) };
    }
}

const fn rounded_to_page(size: usize) -> usize {
    size.div_ceil(PAGE) * PAGE
}

/// Loads a driver image (see the module documentation for the steps).
///
/// `resolve(module, name)` gives the address of the stand-in for one import
/// (module names compare case-insensitively there, as Windows does).
///
/// # Errors
///
/// [`ImageError::Malformed`] for headers, sections, relocations or imports
/// that are out of bounds or of an unsupported kind;
/// [`ImageError::MissingImports`] naming every unresolved import;
/// [`ImageError::Host`] if memory could not be mapped or protected.
#[allow(
    clippy::too_many_lines,
    reason = "the loader's steps in the order Windows does them"
)]
pub fn load(
    file: &[u8],
    resolve: &dyn Fn(&str, &str) -> Option<usize>,
) -> Result<LoadedImage, ImageError> {
    let pe = PeFile64::parse(file).map_err(|e| malformed(format!("not a PE32+ image: {e}")))?;
    let headers: &ImageNtHeaders64 = pe.nt_headers();
    let machine = headers.file_header().machine.get(LE);
    if machine == IMAGE_FILE_MACHINE_ARM64 {
        // The package's ARM64 driver: real code for another processor. The
        // emulator calls into the image's x64 code natively, so it cannot run
        // it; say so instead of a bare "wrong machine".
        return Err(malformed(format!(
            "machine {machine:#06x} is ARM64: the emulator runs x64 (AMD64) driver images \
             only, natively on an x86_64 host; run the package's amd64/rswavert.sys"
        )));
    }
    if machine != IMAGE_FILE_MACHINE_AMD64 {
        return Err(malformed(format!(
            "machine {machine:#06x} is not AMD64 (0x8664)"
        )));
    }
    let optional = headers.optional_header();
    let size_of_image = optional.size_of_image() as usize;
    let size_of_headers = optional.size_of_headers() as usize;
    let section_alignment = optional.section_alignment() as usize;
    if section_alignment == 0 || section_alignment % PAGE != 0 {
        return Err(malformed(format!(
            "section alignment {section_alignment:#x} is not a multiple of the page size; sections could not get their own protections"
        )));
    }
    if size_of_image == 0 || size_of_image > 256 << 20 {
        return Err(malformed(format!(
            "SizeOfImage {size_of_image:#x} is 0 or absurd"
        )));
    }
    if size_of_headers > file.len() || size_of_headers > size_of_image {
        return Err(malformed(format!(
            "SizeOfHeaders {size_of_headers:#x} lies outside the file or the image"
        )));
    }
    let entry_rva = optional.address_of_entry_point();
    if entry_rva as usize >= size_of_image {
        return Err(malformed(format!(
            "entry point RVA {entry_rva:#x} lies outside the image"
        )));
    }

    let mut mapping = Mapping::new(rounded_to_page(size_of_image))?;
    let image = mapping.bytes();
    let headers_bytes = file
        .get(..size_of_headers)
        .ok_or_else(|| malformed("headers outside the file"))?;
    image
        .get_mut(..size_of_headers)
        .ok_or_else(|| malformed("headers outside the image"))?
        .copy_from_slice(headers_bytes);

    // Sections at their RVAs.
    let mut sections = Vec::new();
    for section in pe.section_table().iter() {
        let name = String::from_utf8_lossy(section.raw_name())
            .trim_end_matches('\0')
            .to_owned();
        let rva = section.virtual_address.get(LE);
        let virtual_size = section.virtual_size.get(LE);
        let raw_size = section.size_of_raw_data.get(LE);
        let raw_offset = section.pointer_to_raw_data.get(LE) as usize;
        let size = if virtual_size == 0 {
            raw_size
        } else {
            virtual_size
        };
        let start = rva as usize;
        let end = start
            .checked_add(size as usize)
            .filter(|&end| end <= size_of_image)
            .ok_or_else(|| {
                malformed(format!(
                    "section {name} ({rva:#x} + {size:#x}) lies outside the image ({size_of_image:#x})"
                ))
            })?;
        if start % section_alignment != 0 {
            return Err(malformed(format!(
                "section {name} at {rva:#x} is not aligned to {section_alignment:#x}"
            )));
        }
        let copied = raw_size.min(size) as usize;
        let raw = raw_offset
            .checked_add(copied)
            .and_then(|raw_end| file.get(raw_offset..raw_end))
            .ok_or_else(|| {
                malformed(format!(
                    "section {name}'s raw data ({raw_offset:#x} + {copied:#x}) lies outside the file ({:#x})",
                    file.len()
                ))
            })?;
        image
            .get_mut(start..start + copied)
            .ok_or_else(|| malformed(format!("section {name} outside the image")))?
            .copy_from_slice(raw);
        let characteristics = section.characteristics.get(LE);
        let protection = match (
            characteristics & IMAGE_SCN_MEM_READ != 0,
            characteristics & IMAGE_SCN_MEM_WRITE != 0,
            characteristics & IMAGE_SCN_MEM_EXECUTE != 0,
        ) {
            (_, true, true) => {
                return Err(malformed(format!(
                    "section {name} is writable and executable (refused, as memory integrity does)"
                )))
            }
            (_, false, true) => "r-x",
            (_, true, false) => "rw-",
            (true, false, false) => "r--",
            (false, false, false) => "---",
        };
        let _ = end;
        sections.push(MappedSection {
            name,
            rva,
            size,
            protection,
        });
    }

    // Base relocations: the delta between where we mapped and where the linker wanted.
    let base = mapping.base.as_ptr().addr() as u64;
    let preferred_base = optional.image_base();
    let delta = base.wrapping_sub(preferred_base);
    let directories = pe.data_directories();
    let mut blocks = directories
        .relocation_blocks(file, &pe.section_table())
        .map_err(|e| malformed(format!("relocation directory: {e}")))?;
    let image = mapping.bytes();
    if let Some(blocks) = blocks.as_mut() {
        while let Some(block) = blocks
            .next()
            .map_err(|e| malformed(format!("relocation block: {e}")))?
        {
            for relocation in block {
                match relocation.typ {
                    IMAGE_REL_BASED_ABSOLUTE => {}
                    IMAGE_REL_BASED_DIR64 => {
                        let at = relocation.virtual_address as usize;
                        let slot = image.get_mut(at..at + 8).ok_or_else(|| {
                            malformed(format!(
                                "relocation at {at:#x} lies outside the image ({size_of_image:#x})"
                            ))
                        })?;
                        let mut value = [0u8; 8];
                        value.copy_from_slice(slot);
                        let moved = u64::from_le_bytes(value).wrapping_add(delta);
                        slot.copy_from_slice(&moved.to_le_bytes());
                    }
                    other => {
                        return Err(malformed(format!(
                        "relocation type {other} at {:#x} is not supported (x64 images use DIR64)",
                        relocation.virtual_address
                    )))
                    }
                }
            }
        }
    }

    // Imports, by module and name, into the import address table.
    let mut imports = Vec::new();
    let mut missing = Vec::new();
    for entry in import_entries(&pe)? {
        let slot = entry.slot_rva as usize;
        if slot + 8 > size_of_image {
            return Err(malformed(format!(
                "{}!{}'s IAT slot lies outside the image",
                entry.module, entry.name
            )));
        }
        match resolve(&entry.module, &entry.name) {
            Some(address) => {
                image
                    .get_mut(slot..slot + 8)
                    .ok_or_else(|| malformed("IAT slot outside the image"))?
                    .copy_from_slice(&(address as u64).to_le_bytes());
                imports.push(BoundImport {
                    module: entry.module,
                    name: entry.name,
                    address,
                });
            }
            None => missing.push(format!("{}!{}", entry.module, entry.name)),
        }
    }
    if !missing.is_empty() {
        return Err(ImageError::MissingImports(missing));
    }

    // Protections last: nothing writes the image from here on but the image itself.
    mapping.protect(0, mapping.size, libc::PROT_NONE)?;
    mapping.protect(0, rounded_to_page(size_of_headers), libc::PROT_READ)?;
    for section in &sections {
        let protection = match section.protection {
            "r-x" => libc::PROT_READ | libc::PROT_EXEC,
            "rw-" => libc::PROT_READ | libc::PROT_WRITE,
            "r--" => libc::PROT_READ,
            _ => libc::PROT_NONE,
        };
        mapping.protect(
            section.rva as usize,
            rounded_to_page(section.size as usize),
            protection,
        )?;
    }
    let stored_checksum = optional.check_sum();
    let (base, size) = mapping.keep();
    Ok(LoadedImage {
        base,
        size,
        entry_rva,
        preferred_base,
        stored_checksum,
        imports,
        sections,
    })
}

/// One import-table entry, by name.
struct ImportEntry<'data> {
    module: String,
    name: String,
    /// The name's bytes, borrowed from the file (so their offset is known).
    name_bytes: &'data [u8],
    /// The RVA of its IAT slot.
    slot_rva: u32,
}

/// Every import of the image, in table order. Imports by ordinal are refused
/// (drivers import by name).
fn import_entries<'data>(pe: &PeFile64<'data>) -> Result<Vec<ImportEntry<'data>>, ImageError> {
    let mut entries = Vec::new();
    let Some(table) = pe
        .import_table()
        .map_err(|e| malformed(format!("import directory: {e}")))?
    else {
        return Ok(entries);
    };
    let mut descriptors = table
        .descriptors()
        .map_err(|e| malformed(format!("import descriptors: {e}")))?;
    while let Some(descriptor) = descriptors
        .next()
        .map_err(|e| malformed(format!("import descriptor: {e}")))?
    {
        let module = String::from_utf8_lossy(
            table
                .name(descriptor.name.get(LE))
                .map_err(|e| malformed(format!("import module name: {e}")))?,
        )
        .into_owned();
        let first_thunk = descriptor.first_thunk.get(LE);
        let lookup = match descriptor.original_first_thunk.get(LE) {
            0 => first_thunk,
            rva => rva,
        };
        let mut thunks = table
            .thunks(lookup)
            .map_err(|e| malformed(format!("{module}'s lookup table: {e}")))?;
        let mut index = 0u32;
        while let Some(thunk) = thunks
            .next::<ImageNtHeaders64>()
            .map_err(|e| malformed(format!("{module}'s lookup table: {e}")))?
        {
            let name_bytes = match table
                .import::<ImageNtHeaders64>(thunk)
                .map_err(|e| malformed(format!("{module} import {index}: {e}")))?
            {
                Import::Name(_hint, name) => name,
                Import::Ordinal(ordinal) => {
                    return Err(malformed(format!(
                        "{module} import {index} is by ordinal ({ordinal}); drivers import by name"
                    )))
                }
            };
            let slot_rva = index
                .checked_mul(8)
                .and_then(|offset| first_thunk.checked_add(offset))
                .ok_or_else(|| malformed(format!("{module} import {index}: IAT slot overflows")))?;
            entries.push(ImportEntry {
                module: module.clone(),
                name: String::from_utf8_lossy(name_bytes).into_owned(),
                name_bytes,
                slot_rva,
            });
            index += 1;
        }
    }
    Ok(entries)
}

/// The import called `name`, for tests that patch a copy of the real image.
fn find_import<'data>(file: &'data [u8], name: &str) -> Result<ImportEntry<'data>, ImageError> {
    let pe = PeFile64::parse(file).map_err(|e| malformed(format!("not a PE32+ image: {e}")))?;
    import_entries(&pe)?
        .into_iter()
        .find(|entry| entry.name == name)
        .ok_or_else(|| malformed(format!("the image does not import {name}")))
}

/// Where an import's name (hint/name entry) lies in the file, for tests
/// that patch a copy of the real image.
///
/// # Errors
///
/// The image cannot be parsed or does not import `name`.
pub fn import_name_offset(file: &[u8], name: &str) -> Result<usize, ImageError> {
    let entry = find_import(file, name)?;
    // The name borrows the file: its offset is the name's.
    Ok(entry.name_bytes.as_ptr().addr() - file.as_ptr().addr())
}

/// The RVA of an import's IAT slot, for tests that patch code to call it.
///
/// # Errors
///
/// The image cannot be parsed or does not import `name`.
pub fn import_slot_rva(file: &[u8], name: &str) -> Result<u32, ImageError> {
    find_import(file, name).map(|entry| entry.slot_rva)
}

/// The file offset of the entry point, for tests that patch it.
///
/// # Errors
///
/// The image cannot be parsed or its entry lies in no section's raw data.
pub fn entry_file_offset(file: &[u8]) -> Result<usize, ImageError> {
    let pe = PeFile64::parse(file).map_err(|e| malformed(format!("not a PE32+ image: {e}")))?;
    let entry = pe.nt_headers().optional_header().address_of_entry_point();
    for section in pe.section_table().iter() {
        let rva = section.virtual_address.get(LE);
        let raw = section.size_of_raw_data.get(LE);
        if entry >= rva && entry - rva < raw {
            return Ok(section.pointer_to_raw_data.get(LE) as usize + (entry - rva) as usize);
        }
    }
    Err(malformed("the entry point lies in no section's raw data"))
}

/// The entry point's RVA, for tests that patch it.
///
/// # Errors
///
/// The image cannot be parsed.
pub fn entry_rva(file: &[u8]) -> Result<u32, ImageError> {
    let pe = PeFile64::parse(file).map_err(|e| malformed(format!("not a PE32+ image: {e}")))?;
    Ok(pe.nt_headers().optional_header().address_of_entry_point())
}
