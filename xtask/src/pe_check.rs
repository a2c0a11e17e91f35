//! Checks that a built `.sys` is a loadable x64 kernel image.
//!
//! The facts are read from the file with the `object` crate into
//! [`ImageFacts`]; [`check`] then compares them with what the Windows loader
//! and code-integrity policy demand of a driver. Keeping the two apart lets the
//! tests feed deliberately broken facts (and byte-patched copies of the real
//! image) through the very same rules.
//!
//! The memory-integrity (HVCI) rules follow Microsoft Learn, "Implement memory
//! integrity compatible code"
//! (<https://learn.microsoft.com/en-us/windows-hardware/drivers/driversecurity/implement-hvci-compatible-code>):
//! no section both writable and executable, sections page aligned, the import
//! address table outside executable memory, and none of the DDIs that page
//! lists as able to hand out executable memory (see [`EXECUTABLE_MEMORY_DDIS`]).
//! Memory integrity is on by default on clean Windows 11 installs on capable
//! hardware, where a driver breaking these rules does not load (Learn, "Driver
//! compatibility with memory integrity and VBS",
//! <https://learn.microsoft.com/en-us/windows-hardware/test/hlk/testref/driver-compatibility-with-device-guard>).

use std::fmt::Write as _;

use object::{
    pe::{
        ImageNtHeaders64, IMAGE_DIRECTORY_ENTRY_IAT, IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE,
        IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY, IMAGE_DLLCHARACTERISTICS_NX_COMPAT,
        IMAGE_SCN_MEM_EXECUTE, IMAGE_SCN_MEM_READ, IMAGE_SCN_MEM_WRITE, IMAGE_SUBSYSTEM_NATIVE,
    },
    read::pe::{ImageThunkData as _, PeFile64},
    Object, ObjectSection,
};

use crate::exports::ModuleExports;
use crate::pe_checksum;
use crate::prereq::WindowsTarget;

/// The page size memory integrity aligns sections to (x64 `PAGE_SIZE`).
const PAGE_SIZE: u32 = 0x1000;

/// DDIs that Microsoft Learn's "Implement memory integrity compatible code"
/// lists as "may be impacted" by memory integrity. Most take a pool type, a
/// page protection or MDL mapping flags, and hand out executable memory
/// unless the caller asks for NX; the page says no more than "may be
/// impacted" for each.
///
/// Included: every exported function the page names, in its order: the
/// kernel-wide list (pool, lookaside, contiguous memory, `MmCopyMemory`,
/// `MmMapIoSpace`, the MDL mappings, virtual memory and sections, CLFS), and
/// the NDIS, storage, display, PortCls, filter-manager and WDF entries.
/// Left out: the page's COM methods (`IMiniportWaveCyclic::NewStream`,
/// `IPortWavePci::NewMasterDmaChannel`, ...) and the `DxgkCbMapMemory`
/// callback: they are reached through a vtable or a callback table, never
/// imported by name, so an import table cannot show them.
///
/// An import check cannot see the pool type or protection a call passes, so
/// it is stricter than memory integrity: the driver imports none of these
/// but the reviewed exceptions of [`NX_BY_ARGUMENT`] (it allocates pool with
/// `ExAllocatePool2`, NX by default, gets its buffers from PortCls'
/// `IPortWaveRTStream` and maps the HD Audio BAR with `MmMapIoSpaceEx`).
/// Another one (say `MmMapLockedPagesSpecifyCache` with
/// `MdlMappingNoExecute`) needs a reviewed exception there that names the NX
/// argument at its call site.
pub const EXECUTABLE_MEMORY_DDIS: &[&str] = &[
    "ExAllocatePool",
    "ExAllocatePoolWithQuota",
    "ExAllocatePoolWithQuotaTag",
    "ExAllocatePoolWithTag",
    "ExAllocatePoolWithTagPriority",
    "ExInitializeNPagedLookasideList",
    "ExInitializeLookasideListEx",
    "MmAllocateContiguousMemory",
    "MmAllocateContiguousMemorySpecifyCache",
    "MmAllocateContiguousMemorySpecifyCacheNode",
    "MmAllocateContiguousNodeMemory",
    "MmCopyMemory",
    "MmMapIoSpace",
    "MmMapLockedPages",
    "MmMapLockedPagesSpecifyCache",
    "MmProtectMdlSystemAddress",
    "ZwAllocateVirtualMemory",
    "ZwCreateSection",
    "ZwMapViewOfSection",
    "NtCreateSection",
    "NtMapViewOfSection",
    "ClfsCreateMarshallingArea",
    "NdisAllocateMemoryWithTagPriority",
    "StorPortGetDataInBufferSystemAddress",
    "StorPortGetSystemAddress",
    "ChangerClassAllocatePool",
    "VideoPortAllocatePool",
    "PcNewDmaChannel",
    "PcNewResourceList",
    "PcNewResourceSublist",
    "FltAllocatePoolAlignedWithTag",
    "FltAllocateContext",
    "WdfLookasideListCreate",
    "WdfMemoryCreate",
    "WdfDeviceAllocAndQueryProperty",
    "WdfDeviceAllocAndQueryPropertyEx",
    "WdfFdoInitAllocAndQueryProperty",
    "WdfFdoInitAllocAndQueryPropertyEx",
    "WdfIoTargetAllocAndQueryTargetProperty",
    "WdfRegistryQueryMemory",
];

/// Reviewed exceptions to [`EXECUTABLE_MEMORY_DDIS`]: a DDI the driver
/// imports whose every call site passes an explicit no-execute protection,
/// with the file of that call site and the argument it passes (a test holds
/// the file to it).
///
/// `MmAllocateContiguousNodeMemory`: the HD Audio controller's common page
/// (`KernelMmio::allocate_common`), `PAGE_READWRITE | PAGE_NOCACHE`. Learn's
/// "Implement memory integrity compatible code" names this DDI, with
/// `PAGE_READWRITE`, as the replacement for
/// `MmAllocateContiguousMemorySpecifyCache`, whose memory is executable.
pub const NX_BY_ARGUMENT: &[(&str, &str, &str)] = &[(
    "MmAllocateContiguousNodeMemory",
    "src/mmio.rs",
    "PAGE_READWRITE | PAGE_NOCACHE,",
)];

/// One entry of the section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionFacts {
    /// Section name (`.text`, `.rdata`, ...).
    pub name: String,
    /// Relative virtual address of the section's start.
    pub virtual_address: u32,
    /// Size in memory.
    pub virtual_size: u32,
    /// `IMAGE_SCN_*` flags.
    pub characteristics: u32,
}

impl SectionFacts {
    const fn has(&self, flag: u32) -> bool {
        self.characteristics & flag != 0
    }

    /// Whether `rva` lies inside the section.
    pub const fn contains(&self, rva: u32) -> bool {
        rva >= self.virtual_address && rva - self.virtual_address < self.virtual_size
    }

    /// `R`, `W`, `X` as the section's memory is mapped, e.g. `RX`.
    fn protection(&self) -> String {
        [
            (IMAGE_SCN_MEM_READ, 'R'),
            (IMAGE_SCN_MEM_WRITE, 'W'),
            (IMAGE_SCN_MEM_EXECUTE, 'X'),
        ]
        .into_iter()
        .filter(|(flag, _)| self.has(*flag))
        .map(|(_, letter)| letter)
        .collect()
    }
}

/// What the check needs to know about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// COFF machine.
    pub machine: u16,
    /// Optional-header magic says PE32+.
    pub is_pe32_plus: bool,
    /// Optional-header subsystem.
    pub subsystem: u16,
    /// Optional-header DLL characteristics.
    pub dll_characteristics: u16,
    /// Entry point (virtual address).
    pub entry: u64,
    /// Exported names with their virtual addresses.
    pub exports: Vec<(String, u64)>,
    /// Imports as (module, symbol).
    pub imports: Vec<(String, String)>,
    /// The section table.
    pub sections: Vec<SectionFacts>,
    /// Optional-header `SectionAlignment`.
    pub section_alignment: u32,
    /// Optional-header `FileAlignment`.
    pub file_alignment: u32,
    /// Optional-header `CheckSum` as stored in the file.
    pub stored_checksum: u32,
    /// The checksum the file's bytes sum to ([`pe_checksum::pe_checksum`]).
    pub computed_checksum: u32,
    /// RVA of the import address table (data directory 12), if it has one.
    pub import_address_table: Option<u32>,
    /// File size in bytes.
    pub file_size: usize,
}

/// Reads the facts from an image's bytes.
pub fn read_facts(data: &[u8]) -> Result<ImageFacts, String> {
    let file = PeFile64::parse(data).map_err(|error| format!("not a PE32+ image: {error}"))?;
    let headers = file.nt_headers();
    let optional = &headers.optional_header;
    let endian = object::LittleEndian;
    let imports = file
        .imports()
        .map_err(|error| format!("import table: {error}"))?
        .into_iter()
        .map(|import| {
            (
                String::from_utf8_lossy(import.library()).into_owned(),
                String::from_utf8_lossy(import.name()).into_owned(),
            )
        })
        .collect();
    let exports = file
        .exports()
        .map_err(|error| format!("export table: {error}"))?
        .into_iter()
        .map(|export| {
            (
                String::from_utf8_lossy(export.name()).into_owned(),
                export.address(),
            )
        })
        .collect();
    let sections = file
        .sections()
        .map(|section| {
            let header = section.pe_section();
            SectionFacts {
                name: section.name().unwrap_or("?").to_owned(),
                virtual_address: header.virtual_address.get(endian),
                virtual_size: header.virtual_size.get(endian),
                characteristics: header.characteristics.get(endian),
            }
        })
        .collect();
    let import_address_table = file
        .data_directory(IMAGE_DIRECTORY_ENTRY_IAT)
        .filter(|directory| directory.size.get(endian) != 0)
        .map(|directory| directory.virtual_address.get(endian));
    Ok(ImageFacts {
        machine: headers.file_header.machine.get(endian),
        is_pe32_plus: optional.magic.get(endian) == object::pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC,
        subsystem: optional.subsystem.get(endian),
        dll_characteristics: optional.dll_characteristics.get(endian),
        entry: file.entry(),
        exports,
        imports,
        sections,
        section_alignment: optional.section_alignment.get(endian),
        file_alignment: optional.file_alignment.get(endian),
        stored_checksum: optional.check_sum.get(endian),
        computed_checksum: pe_checksum::computed_checksum(data)
            .ok_or_else(|| "image too short for its CheckSum field".to_owned())?,
        import_address_table,
        file_size: data.len(),
    })
}

/// Every way the image falls short of a loadable, signed-policy-ready driver.
pub fn check(facts: &ImageFacts, target: &WindowsTarget, modules: &[ModuleExports]) -> Vec<String> {
    let mut problems = Vec::new();
    if !facts.is_pe32_plus {
        problems.push("not PE32+".to_owned());
    }
    if facts.machine != target.machine {
        problems.push(format!(
            "machine is {:#06x}, not {} ({:#06x})",
            facts.machine, target.machine_name, target.machine
        ));
    }
    if facts.subsystem != IMAGE_SUBSYSTEM_NATIVE {
        problems.push(format!("subsystem is {}, not NATIVE (1)", facts.subsystem));
    }
    for (flag, name) in [
        (IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, "DYNAMIC_BASE"),
        (IMAGE_DLLCHARACTERISTICS_NX_COMPAT, "NX_COMPAT"),
        (IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY, "FORCE_INTEGRITY"),
    ] {
        if facts.dll_characteristics & flag == 0 {
            problems.push(format!("DLL characteristics lack {name}"));
        }
    }
    match facts.exports.iter().find(|(name, _)| name == "DriverEntry") {
        Some((_, address)) if *address == facts.entry => {}
        Some((_, address)) => problems.push(format!(
            "entry point {:#x} is not DriverEntry ({address:#x})",
            facts.entry
        )),
        None => problems
            .push("DriverEntry is not exported, so the entry point cannot be confirmed".to_owned()),
    }
    for (library, symbol) in &facts.imports {
        match modules
            .iter()
            .find(|module| module.module.eq_ignore_ascii_case(library))
        {
            None => problems.push(format!(
                "imports {symbol} from {library}, which is not a kernel module the driver may use"
            )),
            Some(module) if !module.exports(symbol) => problems.push(format!(
                "imports {symbol} from {library}, which is not in xtask/kernel-exports/{}.def",
                module.module
            )),
            Some(_) => {}
        }
    }
    check_checksum(facts, &mut problems);
    check_memory_integrity(facts, &mut problems);
    problems
}

/// The loader refuses a kernel image whose `CheckSum` is missing or wrong.
fn check_checksum(facts: &ImageFacts, problems: &mut Vec<String>) {
    if facts.stored_checksum == 0 {
        problems.push(format!(
            "CheckSum is 0 (the image sums to {:#010x}): Windows refuses a kernel image \
             without one; the post-link checksum step did not run",
            facts.computed_checksum
        ));
    } else if facts.stored_checksum != facts.computed_checksum {
        problems.push(format!(
            "CheckSum is {:#010x}, but the image sums to {:#010x}: Windows refuses it",
            facts.stored_checksum, facts.computed_checksum
        ));
    }
}

/// The memory-integrity (HVCI) rules of the Learn page cited in the module docs.
fn check_memory_integrity(facts: &ImageFacts, problems: &mut Vec<String>) {
    for section in &facts.sections {
        if section.has(IMAGE_SCN_MEM_WRITE) && section.has(IMAGE_SCN_MEM_EXECUTE) {
            problems.push(format!(
                "memory integrity: section {} is both writable and executable",
                section.name
            ));
        }
        if section.virtual_address % PAGE_SIZE != 0 {
            problems.push(format!(
                "memory integrity: section {} starts at RVA {:#x}, not on a page boundary",
                section.name, section.virtual_address
            ));
        }
    }
    if facts.section_alignment == 0 || facts.section_alignment % PAGE_SIZE != 0 {
        problems.push(format!(
            "memory integrity: SectionAlignment {:#x} is not a multiple of the page size {PAGE_SIZE:#x}",
            facts.section_alignment
        ));
    }
    // The PE format's own bounds: a power of two from 512 to 64 KiB, and no
    // larger than SectionAlignment (raw data must fit the pages it maps to).
    if !facts.file_alignment.is_power_of_two()
        || !(0x200..=0x1_0000).contains(&facts.file_alignment)
        || facts.file_alignment > facts.section_alignment
    {
        problems.push(format!(
            "FileAlignment {:#x} is not a power of two from 0x200 to 0x10000 \
             no larger than SectionAlignment {:#x}",
            facts.file_alignment, facts.section_alignment
        ));
    }
    if let Some(table) = facts.import_address_table {
        if let Some(section) = facts
            .sections
            .iter()
            .find(|section| section.contains(table) && section.has(IMAGE_SCN_MEM_EXECUTE))
        {
            problems.push(format!(
                "memory integrity: the import address table (RVA {table:#x}) lies in \
                 executable section {}",
                section.name
            ));
        }
    }
    for (library, symbol) in &facts.imports {
        let reviewed = NX_BY_ARGUMENT.iter().any(|(ddi, _, _)| ddi == symbol);
        if EXECUTABLE_MEMORY_DDIS.contains(&symbol.as_str()) && !reviewed {
            problems.push(format!(
                "memory integrity: imports {symbol} from {library}, a DDI that can hand out \
                 executable memory (use the NX variant, e.g. ExAllocatePool2 or MmMapIoSpaceEx)"
            ));
        }
    }
}

/// A one-screen summary of the image.
pub fn summary(facts: &ImageFacts, target: &WindowsTarget) -> String {
    let mut text = format!(
        "    size {} bytes, machine {} ({:#06x}), subsystem NATIVE, DLL characteristics {:#06x}\n",
        facts.file_size, target.machine_name, facts.machine, facts.dll_characteristics
    );
    let checksum_verdict =
        if facts.stored_checksum != 0 && facts.stored_checksum == facts.computed_checksum {
            "ok"
        } else {
            "WRONG"
        };
    let _ = writeln!(
        text,
        "    checksum {:#010x} {checksum_verdict}, section alignment {:#x}, file alignment {:#x}",
        facts.stored_checksum, facts.section_alignment, facts.file_alignment
    );
    text.push_str("    sections:");
    for section in &facts.sections {
        let _ = write!(
            text,
            " {} ({} B, {})",
            section.name,
            section.virtual_size,
            section.protection()
        );
    }
    text.push('\n');
    let mut libraries: Vec<&str> = facts
        .imports
        .iter()
        .map(|(library, _)| library.as_str())
        .collect();
    libraries.dedup();
    for library in libraries {
        let symbols: Vec<&str> = facts
            .imports
            .iter()
            .filter(|(owner, _)| owner == library)
            .map(|(_, symbol)| symbol.as_str())
            .collect();
        let _ = writeln!(text, "    imports from {library}: {}", symbols.join(", "));
    }
    text
}

// Byte patches for the negative controls. Each returns a copy of the image
// with one field changed, or `None` if the image lacks what it patches; none
// fixes the checksum (see `with_checksum_fixed`).

/// Offsets inside the PE32+ optional header.
const SECTION_ALIGNMENT_IN_OPTIONAL_HEADER: usize = 32;
const DLL_CHARACTERISTICS_IN_OPTIONAL_HEADER: usize = 70;
/// Offsets inside the COFF file header, which the optional header follows.
const COFF_HEADER_SIZE: usize = 20;
const NUMBER_OF_SECTIONS_IN_COFF_HEADER: usize = 2;
const SIZE_OF_OPTIONAL_HEADER_IN_COFF_HEADER: usize = 16;
/// Section-table entries: 40 bytes, name first, characteristics last.
const SECTION_HEADER_SIZE: usize = 40;
const CHARACTERISTICS_IN_SECTION_HEADER: usize = 36;

fn read_u16_at(data: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(offset..offset.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn read_u32_at(data: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(offset..offset.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// A copy of `data` with the bytes at `offset` replaced by `bytes`.
fn patched(data: &[u8], offset: usize, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut copy = data.to_vec();
    copy.get_mut(offset..offset.checked_add(bytes.len())?)?
        .copy_from_slice(bytes);
    Some(copy)
}

/// A copy with the `CheckSum` the bytes sum to, so that a patch made for
/// another rule is rejected for that rule's reason alone.
pub fn with_checksum_fixed(mut data: Vec<u8>) -> Option<Vec<u8>> {
    pe_checksum::write_checksum(&mut data).ok()?;
    Some(data)
}

/// A copy of the image with `CheckSum` set to `value`.
pub fn with_checksum(data: &[u8], value: u32) -> Option<Vec<u8>> {
    patched(
        data,
        pe_checksum::checksum_offset(data)?,
        &value.to_le_bytes(),
    )
}

/// A copy of the image with the COFF file header's `Machine` set to `machine`.
pub fn with_machine(data: &[u8], machine: u16) -> Option<Vec<u8>> {
    // The file header (20 bytes, `Machine` first) ends where the optional
    // header begins (PE/COFF specification, "COFF File Header").
    let offset = pe_checksum::optional_header_offset(data)?.checked_sub(20)?;
    read_u16_at(data, offset)?;
    patched(data, offset, &machine.to_le_bytes())
}

/// A copy of the image with `FORCE_INTEGRITY` cleared.
pub fn without_force_integrity(data: &[u8]) -> Option<Vec<u8>> {
    let offset = pe_checksum::optional_header_offset(data)?
        .checked_add(DLL_CHARACTERISTICS_IN_OPTIONAL_HEADER)?;
    let value = read_u16_at(data, offset)? & !IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY;
    patched(data, offset, &value.to_le_bytes())
}

/// A copy of the image with `SectionAlignment` set to `value`.
pub fn with_section_alignment(data: &[u8], value: u32) -> Option<Vec<u8>> {
    let offset = pe_checksum::optional_header_offset(data)?
        .checked_add(SECTION_ALIGNMENT_IN_OPTIONAL_HEADER)?;
    read_u32_at(data, offset)?;
    patched(data, offset, &value.to_le_bytes())
}

/// A copy of the image with `flags` added to the characteristics of the
/// section called `name`.
pub fn with_section_flags(data: &[u8], name: &str, flags: u32) -> Option<Vec<u8>> {
    let optional = pe_checksum::optional_header_offset(data)?;
    let coff = optional.checked_sub(COFF_HEADER_SIZE)?;
    let count = usize::from(read_u16_at(data, coff + NUMBER_OF_SECTIONS_IN_COFF_HEADER)?);
    let optional_size = usize::from(read_u16_at(
        data,
        coff + SIZE_OF_OPTIONAL_HEADER_IN_COFF_HEADER,
    )?);
    let table = optional.checked_add(optional_size)?;
    (0..count).find_map(|index| {
        let header = table.checked_add(index.checked_mul(SECTION_HEADER_SIZE)?)?;
        let raw_name = data.get(header..header.checked_add(8)?)?;
        let stored = raw_name.split(|byte| *byte == 0).next()?;
        if stored != name.as_bytes() {
            return None;
        }
        let offset = header + CHARACTERISTICS_IN_SECTION_HEADER;
        let value = read_u32_at(data, offset)? | flags;
        patched(data, offset, &value.to_le_bytes())
    })
}

/// File offset of the name of the imported function `symbol` in the
/// hint/name table, found through the import lookup table (not by a byte
/// search, which could hit the same text inside a longer name).
fn import_name_offset(data: &[u8], symbol: &str) -> Option<usize> {
    let file = PeFile64::parse(data).ok()?;
    let table = file.import_table().ok()??;
    let endian = object::LittleEndian;
    let mut descriptors = table.descriptors().ok()?;
    while let Some(descriptor) = descriptors.next().ok()? {
        let lookup = match descriptor.original_first_thunk.get(endian) {
            0 => descriptor.first_thunk.get(endian),
            rva => rva,
        };
        let mut thunks = table.thunks(lookup).ok()?;
        while let Some(thunk) = thunks.next::<ImageNtHeaders64>().ok()? {
            if thunk.is_ordinal() {
                continue;
            }
            let (_, name) = table.hint_name(thunk.address()).ok()?;
            if name == symbol.as_bytes() {
                // The name follows the entry's 2-byte hint.
                let name_rva = thunk.address().checked_add(2)?;
                let (offset, _) = file.section_table().pe_file_range_at(name_rva)?;
                return usize::try_from(offset).ok();
            }
        }
    }
    None
}

/// A copy of the image in which the imported function `symbol` is renamed to
/// `new_name` in place (NUL-padded, so `new_name` may not be longer).
pub fn importing_renamed(data: &[u8], symbol: &str, new_name: &str) -> Option<Vec<u8>> {
    if new_name.len() > symbol.len() {
        return None;
    }
    let offset = import_name_offset(data, symbol)?;
    let mut padded = new_name.as_bytes().to_vec();
    padded.resize(symbol.len(), 0);
    patched(data, offset, &padded)
}

/// A copy of the image in which the import of `library` (a name at least ten
/// bytes long) is redirected to the user-mode `user32.dll`. The new name is
/// NUL-padded over the old one, so the file stays well-formed.
pub fn importing_user_mode_dll(data: &[u8], library: &str) -> Option<Vec<u8>> {
    const USER_MODE_DLL: &[u8] = b"user32.dll";
    let needle = library.as_bytes();
    if needle.len() < USER_MODE_DLL.len() {
        return None;
    }
    let position = data
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))?;
    let mut copy = data.to_vec();
    let name = copy.get_mut(position..position + needle.len())?;
    name.fill(0);
    name.get_mut(..USER_MODE_DLL.len())?
        .copy_from_slice(USER_MODE_DLL);
    Some(copy)
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_export_list_offers_a_ddi_memory_integrity_affects() {
        // The lists say what the image may import; the image check forbids
        // these DDIs (but the reviewed exceptions): the two must never
        // disagree.
        let modules = crate::exports::load_all().unwrap();
        let offered: Vec<String> = modules
            .iter()
            .flat_map(|m| {
                m.entries
                    .iter()
                    .map(move |e| format!("{}!{}", m.module, e.name))
            })
            .filter(|name| {
                EXECUTABLE_MEMORY_DDIS
                    .iter()
                    .filter(|ddi| !NX_BY_ARGUMENT.iter().any(|(nx, _, _)| nx == *ddi))
                    .any(|ddi| name.ends_with(&format!("!{ddi}")))
            })
            .collect();
        assert!(offered.is_empty(), "export lists offer {offered:?}");
    }

    use super::*;
    use crate::prereq::{ARM64, X64};

    fn modules() -> Vec<ModuleExports> {
        vec![
            ModuleExports::parse("LIBRARY ntoskrnl.exe\nEXPORTS\nKeSetEvent\n").unwrap(),
            ModuleExports::parse("LIBRARY portcls.sys\nEXPORTS\nPcAddAdapterDevice\n").unwrap(),
        ]
    }

    fn good() -> ImageFacts {
        ImageFacts {
            machine: X64.machine,
            is_pe32_plus: true,
            subsystem: IMAGE_SUBSYSTEM_NATIVE,
            dll_characteristics: IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE
                | IMAGE_DLLCHARACTERISTICS_NX_COMPAT
                | IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
            entry: 0x1_4000_1000,
            exports: vec![("DriverEntry".to_owned(), 0x1_4000_1000)],
            imports: vec![
                ("ntoskrnl.exe".to_owned(), "KeSetEvent".to_owned()),
                ("portcls.sys".to_owned(), "PcAddAdapterDevice".to_owned()),
            ],
            sections: vec![
                section(".text", 0x1000, IMAGE_SCN_MEM_READ | IMAGE_SCN_MEM_EXECUTE),
                section(".rdata", 0x2000, IMAGE_SCN_MEM_READ),
            ],
            section_alignment: 0x1000,
            file_alignment: 0x200,
            stored_checksum: 0x1_a2b3,
            computed_checksum: 0x1_a2b3,
            import_address_table: Some(0x2100),
            file_size: 4096,
        }
    }

    fn section(name: &str, virtual_address: u32, characteristics: u32) -> SectionFacts {
        SectionFacts {
            name: name.to_owned(),
            virtual_address,
            virtual_size: 0x800,
            characteristics,
        }
    }

    #[test]
    fn a_well_formed_driver_passes() {
        assert_eq!(check(&good(), &X64, &modules()), Vec::<String>::new());
    }

    #[test]
    fn user_mode_import_fails() {
        let mut facts = good();
        facts
            .imports
            .push(("kernel32.dll".to_owned(), "Sleep".to_owned()));
        let problems = check(&facts, &X64, &modules());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("kernel32.dll"));
    }

    #[test]
    fn unlisted_kernel_import_fails() {
        let mut facts = good();
        facts
            .imports
            .push(("ntoskrnl.exe".to_owned(), "ZwMadeUp".to_owned()));
        assert!(check(&facts, &X64, &modules())[0].contains("ZwMadeUp"));
    }

    #[test]
    fn missing_force_integrity_fails() {
        let mut facts = good();
        facts.dll_characteristics &= !IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY;
        assert_eq!(
            check(&facts, &X64, &modules()),
            vec!["DLL characteristics lack FORCE_INTEGRITY"]
        );
    }

    #[test]
    fn wrong_subsystem_machine_and_entry_fail() {
        let mut facts = good();
        facts.subsystem = 2;
        facts.machine = 0x14c;
        facts.entry = 0x1_4000_2000;
        assert_eq!(check(&facts, &X64, &modules()).len(), 3);
    }

    #[test]
    fn each_target_wants_its_own_machine() {
        let x64_image = good();
        assert!(check(&x64_image, &X64, &modules()).is_empty());
        assert_eq!(
            check(&x64_image, &ARM64, &modules()),
            vec!["machine is 0x8664, not ARM64 (0xaa64)"]
        );
        let mut arm64_image = good();
        arm64_image.machine = object::pe::IMAGE_FILE_MACHINE_ARM64;
        assert!(check(&arm64_image, &ARM64, &modules()).is_empty());
        assert_eq!(check(&arm64_image, &X64, &modules()).len(), 1);
    }

    #[test]
    fn missing_checksum_fails() {
        let mut facts = good();
        facts.stored_checksum = 0;
        let problems = check(&facts, &X64, &modules());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("CheckSum is 0"), "{problems:?}");
    }

    #[test]
    fn wrong_checksum_fails() {
        let mut facts = good();
        facts.stored_checksum += 1;
        assert_eq!(
            check(&facts, &X64, &modules()),
            vec!["CheckSum is 0x0001a2b4, but the image sums to 0x0001a2b3: Windows refuses it"]
        );
    }

    #[test]
    fn writable_executable_section_fails() {
        let mut facts = good();
        facts.sections[0].characteristics |= IMAGE_SCN_MEM_WRITE;
        assert_eq!(
            check(&facts, &X64, &modules()),
            vec!["memory integrity: section .text is both writable and executable"]
        );
    }

    #[test]
    fn sub_page_section_alignment_fails() {
        let mut facts = good();
        facts.section_alignment = 0x200;
        let problems = check(&facts, &X64, &modules());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("SectionAlignment 0x200"));
        facts.section_alignment = 0;
        assert!(check(&facts, &X64, &modules())
            .iter()
            .any(|problem| problem.contains("SectionAlignment 0x0")));
    }

    #[test]
    fn unaligned_section_start_fails() {
        let mut facts = good();
        facts.sections[1].virtual_address = 0x2200;
        facts.import_address_table = None;
        assert_eq!(
            check(&facts, &X64, &modules()),
            vec!["memory integrity: section .rdata starts at RVA 0x2200, not on a page boundary"]
        );
    }

    #[test]
    fn insane_file_alignment_fails() {
        for alignment in [0, 0x100, 0x300, 0x2000] {
            let mut facts = good();
            facts.file_alignment = alignment;
            let problems = check(&facts, &X64, &modules());
            assert_eq!(problems.len(), 1, "{alignment:#x}: {problems:?}");
            assert!(problems[0].starts_with("FileAlignment"));
        }
        let mut facts = good();
        facts.file_alignment = 0x1000;
        assert!(check(&facts, &X64, &modules()).is_empty());
    }

    #[test]
    fn import_address_table_in_executable_section_fails() {
        let mut facts = good();
        facts.import_address_table = Some(0x1100);
        assert_eq!(
            check(&facts, &X64, &modules()),
            vec![
                "memory integrity: the import address table (RVA 0x1100) lies in executable \
                 section .text"
            ]
        );
    }

    #[test]
    fn executable_memory_ddi_import_fails() {
        let mut facts = good();
        facts
            .imports
            .push(("ntoskrnl.exe".to_owned(), "MmMapIoSpace".to_owned()));
        let problems = check(&facts, &X64, &modules());
        // Also not in the test's export list; the memory-integrity reason is its own line.
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].starts_with("memory integrity: imports MmMapIoSpace"));
        // The NX-by-default replacement is fine by this rule.
        facts.imports.pop();
        facts
            .imports
            .push(("ntoskrnl.exe".to_owned(), "ExAllocatePool2".to_owned()));
        assert!(!check(&facts, &X64, &modules())
            .iter()
            .any(|problem| problem.starts_with("memory integrity")));
    }

    #[test]
    fn reviewed_exceptions_pass_and_their_call_sites_pass_nx() {
        let mut facts = good();
        for (ddi, file, argument) in NX_BY_ARGUMENT {
            assert!(
                EXECUTABLE_MEMORY_DDIS.contains(ddi),
                "{ddi}: no exception needed"
            );
            facts
                .imports
                .push(("ntoskrnl.exe".to_owned(), (*ddi).to_owned()));
            assert!(
                !check(&facts, &X64, &modules())
                    .iter()
                    .any(|problem| problem.starts_with("memory integrity")),
                "{ddi}"
            );
            facts.imports.pop();
            let source = std::fs::read_to_string(crate::util::workspace_root().join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            // Every call (not the declaration, not a comment) passes the
            // reviewed protection.
            let code: String = source
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let pattern = format!("{ddi}(");
            let calls: Vec<&str> = code
                .match_indices(&pattern)
                .filter(|(at, _)| !code[..*at].ends_with("fn "))
                .map(|(at, _)| {
                    let arguments = &code[at + pattern.len()..];
                    let mut depth = 1;
                    let end = arguments
                        .char_indices()
                        .find(|&(_, c)| {
                            depth += match c {
                                '(' => 1,
                                ')' => -1,
                                _ => 0,
                            };
                            depth == 0
                        })
                        .map_or(arguments.len(), |(end, _)| end);
                    &arguments[..end]
                })
                .collect();
            assert!(!calls.is_empty(), "{file} never calls {ddi}");
            for arguments in calls {
                assert!(
                    arguments.contains(argument) && !arguments.contains("EXECUTE"),
                    "{file}: a {ddi} call without {argument}: {arguments}"
                );
            }
        }
    }

    #[test]
    fn the_forbidden_list_is_from_the_page_and_has_no_nx_variants() {
        for nx in ["ExAllocatePool2", "ExAllocatePool3", "MmMapIoSpaceEx"] {
            assert!(!EXECUTABLE_MEMORY_DDIS.contains(&nx), "{nx}");
        }
        assert_eq!(EXECUTABLE_MEMORY_DDIS.len(), 40);
        let mut sorted = EXECUTABLE_MEMORY_DDIS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), EXECUTABLE_MEMORY_DDIS.len());
    }

    #[test]
    fn summary_reports_checksum_and_protection() {
        let text = summary(&good(), &X64);
        assert!(text.contains("checksum 0x0001a2b3 ok"), "{text}");
        assert!(
            text.contains(".text (2048 B, RX) .rdata (2048 B, R)"),
            "{text}"
        );
        let mut facts = good();
        facts.stored_checksum = 0;
        assert!(summary(&facts, &X64).contains("checksum 0x00000000 WRONG"));
    }

    /// A minimal fake header: `e_lfanew` = 0x40, a 0xf0-byte optional header,
    /// two section headers (`.text`, `.rdata`) after it.
    fn fake_headers() -> Vec<u8> {
        let mut image = vec![0_u8; 0x400];
        image[0x3c] = 0x40;
        let coff = 0x44;
        image[coff + 2..coff + 4].copy_from_slice(&2_u16.to_le_bytes());
        image[coff + 16..coff + 18].copy_from_slice(&0xf0_u16.to_le_bytes());
        let optional = coff + 20;
        image[optional + 32..optional + 36].copy_from_slice(&0x1000_u32.to_le_bytes());
        let table = optional + 0xf0;
        image[table..table + 5].copy_from_slice(b".text");
        image[table + 36..table + 40].copy_from_slice(&0x6000_0020_u32.to_le_bytes());
        image[table + 40..table + 46].copy_from_slice(b".rdata");
        image[table + 76..table + 80].copy_from_slice(&0x4000_0040_u32.to_le_bytes());
        image
    }

    #[test]
    fn header_patches_hit_their_field() {
        let image = fake_headers();
        let optional = 0x40 + 4 + 20;
        let table = optional + 0xf0;
        let flagged = with_section_flags(&image, ".rdata", IMAGE_SCN_MEM_EXECUTE).unwrap();
        assert_eq!(read_u32_at(&flagged, table + 76), Some(0x6000_0040));
        assert_eq!(read_u32_at(&flagged, table + 36), Some(0x6000_0020));
        assert!(with_section_flags(&image, ".data", IMAGE_SCN_MEM_WRITE).is_none());
        // A prefix of a name is not the name.
        assert!(with_section_flags(&image, ".rdat", IMAGE_SCN_MEM_WRITE).is_none());
        let realigned = with_section_alignment(&image, 0x200).unwrap();
        assert_eq!(read_u32_at(&realigned, optional + 32), Some(0x200));
        let summed = with_checksum(&image, 0x1234_5678).unwrap();
        assert_eq!(read_u32_at(&summed, optional + 64), Some(0x1234_5678));
        let fixed = with_checksum_fixed(summed).unwrap();
        assert_eq!(
            read_u32_at(&fixed, optional + 64),
            pe_checksum::computed_checksum(&image)
        );
        for copy in [flagged, realigned, fixed] {
            assert_eq!(copy.len(), image.len());
        }
        // Not a PE image at all: nothing to rename.
        assert!(importing_renamed(&image, "KeSetEvent", "MmMapIoSpace").is_none());
        assert!(importing_renamed(&image, "KeSetEvent", "ExAllocatePoolWithTag").is_none());
    }

    #[test]
    fn byte_patches_only_touch_their_field() {
        // A minimal fake header: e_lfanew points at 0x40.
        let mut image = vec![0_u8; 0x200];
        image[0x3c] = 0x40;
        let offset = 0x40 + 4 + 20 + 70;
        image[offset..offset + 2].copy_from_slice(&0x01e0_u16.to_le_bytes());
        image[0x150..0x15b].copy_from_slice(b"portcls.sys");
        let cleared = without_force_integrity(&image).unwrap();
        assert_eq!(
            u16::from_le_bytes([cleared[offset], cleared[offset + 1]]),
            0x0160
        );
        let renamed = importing_user_mode_dll(&image, "portcls.sys").unwrap();
        assert_eq!(&renamed[0x150..0x15c], b"user32.dll\0\0");
        assert!(importing_user_mode_dll(&image, "hal.dll").is_none());
        assert_eq!(renamed.len(), image.len());
    }
}
