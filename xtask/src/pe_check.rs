//! Checks that a built `.sys` is a loadable x64 kernel image.
//!
//! The facts are read from the file with the `object` crate into
//! [`ImageFacts`]; [`check`] then compares them with what the Windows loader
//! and code-integrity policy demand of a driver. Keeping the two apart lets the
//! tests feed deliberately broken facts (and byte-patched copies of the real
//! image) through the very same rules.

use std::fmt::Write as _;

use object::{
    pe::{
        IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
        IMAGE_DLLCHARACTERISTICS_NX_COMPAT, IMAGE_FILE_MACHINE_AMD64, IMAGE_SUBSYSTEM_NATIVE,
    },
    read::pe::PeFile64,
    Object, ObjectSection,
};

use crate::exports::ModuleExports;

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
    /// Sections as (name, virtual size).
    pub sections: Vec<(String, u64)>,
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
        .map(|section| (section.name().unwrap_or("?").to_owned(), section.size()))
        .collect();
    Ok(ImageFacts {
        machine: headers.file_header.machine.get(endian),
        is_pe32_plus: optional.magic.get(endian) == object::pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC,
        subsystem: optional.subsystem.get(endian),
        dll_characteristics: optional.dll_characteristics.get(endian),
        entry: file.entry(),
        exports,
        imports,
        sections,
        file_size: data.len(),
    })
}

/// Every way the image falls short of a loadable, signed-policy-ready driver.
pub fn check(facts: &ImageFacts, modules: &[ModuleExports]) -> Vec<String> {
    let mut problems = Vec::new();
    if !facts.is_pe32_plus {
        problems.push("not PE32+".to_owned());
    }
    if facts.machine != IMAGE_FILE_MACHINE_AMD64 {
        problems.push(format!("machine is {:#06x}, not AMD64", facts.machine));
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
    problems
}

/// A one-screen summary of the image.
pub fn summary(facts: &ImageFacts) -> String {
    let mut text = format!(
        "    size {} bytes, machine AMD64, subsystem NATIVE, DLL characteristics {:#06x}\n",
        facts.file_size, facts.dll_characteristics
    );
    text.push_str("    sections:");
    for (name, size) in &facts.sections {
        let _ = write!(text, " {name} ({size} B)");
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

/// Offset of `DllCharacteristics` in a PE32+ image, for the negative controls.
fn dll_characteristics_offset(data: &[u8]) -> Option<usize> {
    let pe_offset = u32::from_le_bytes(data.get(0x3c..0x40)?.try_into().ok()?) as usize;
    // PE signature (4) + COFF file header (20) + offset 70 in the optional header.
    Some(pe_offset + 4 + 20 + 70)
}

/// A copy of the image with `FORCE_INTEGRITY` cleared.
pub fn without_force_integrity(data: &[u8]) -> Option<Vec<u8>> {
    let offset = dll_characteristics_offset(data)?;
    let mut copy = data.to_vec();
    let field = copy.get_mut(offset..offset + 2)?;
    let value =
        u16::from_le_bytes([field[0], field[1]]) & !IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY;
    field.copy_from_slice(&value.to_le_bytes());
    Some(copy)
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
    use super::*;

    fn modules() -> Vec<ModuleExports> {
        vec![
            ModuleExports::parse("LIBRARY ntoskrnl.exe\nEXPORTS\nKeSetEvent\n").unwrap(),
            ModuleExports::parse("LIBRARY portcls.sys\nEXPORTS\nPcAddAdapterDevice\n").unwrap(),
        ]
    }

    fn good() -> ImageFacts {
        ImageFacts {
            machine: IMAGE_FILE_MACHINE_AMD64,
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
            sections: vec![(".text".to_owned(), 100)],
            file_size: 4096,
        }
    }

    #[test]
    fn a_well_formed_driver_passes() {
        assert_eq!(check(&good(), &modules()), Vec::<String>::new());
    }

    #[test]
    fn user_mode_import_fails() {
        let mut facts = good();
        facts
            .imports
            .push(("kernel32.dll".to_owned(), "Sleep".to_owned()));
        let problems = check(&facts, &modules());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("kernel32.dll"));
    }

    #[test]
    fn unlisted_kernel_import_fails() {
        let mut facts = good();
        facts
            .imports
            .push(("ntoskrnl.exe".to_owned(), "ZwMadeUp".to_owned()));
        assert!(check(&facts, &modules())[0].contains("ZwMadeUp"));
    }

    #[test]
    fn missing_force_integrity_fails() {
        let mut facts = good();
        facts.dll_characteristics &= !IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY;
        assert_eq!(
            check(&facts, &modules()),
            vec!["DLL characteristics lack FORCE_INTEGRITY"]
        );
    }

    #[test]
    fn wrong_subsystem_machine_and_entry_fail() {
        let mut facts = good();
        facts.subsystem = 2;
        facts.machine = 0x14c;
        facts.entry = 0x1_4000_2000;
        assert_eq!(check(&facts, &modules()).len(), 3);
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
