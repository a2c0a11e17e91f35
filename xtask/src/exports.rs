//! The export lists the project keeps for the kernel modules the driver may
//! import from (`xtask/kernel-exports/<module>.def`).
//!
//! They serve twice: `llvm-dlltool` turns them into the import libraries the
//! cross build links against, and the image check refuses any import that is
//! not listed. Because a wrong name would only fail on Windows (the driver
//! would not load), every name is cross-checked against an independent source:
//! MinGW-w64's import library for the module where one exists; names MinGW
//! lacks (newer kernel APIs, and all of portcls.sys, for which MinGW ships no
//! library) must carry a `; doc:` reference to the Microsoft Learn page that
//! documents them.

use std::{collections::BTreeSet, fs, path::Path};

use crate::util::workspace_root;

/// One exported name and where its existence is documented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportEntry {
    /// The symbol name.
    pub name: String,
    /// The `; doc:` reference, when the line has one.
    pub doc: Option<String>,
}

/// A kernel module's export list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleExports {
    /// The module's file name as the PE import table names it (`hal.dll`).
    pub module: String,
    /// The names it exports, as far as the project relies on them.
    pub entries: Vec<ExportEntry>,
}

impl ModuleExports {
    /// Parses a `.def` file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut module = None;
        let mut in_exports = false;
        let mut entries = Vec::new();
        for (number, raw_line) in text.lines().enumerate() {
            let (code, comment) = raw_line
                .split_once(';')
                .map_or((raw_line, None), |(code, comment)| {
                    (code, Some(comment.trim()))
                });
            let code = code.trim();
            if code.is_empty() {
                continue;
            }
            if let Some(name) = code.strip_prefix("LIBRARY") {
                module = Some(name.trim().to_owned());
            } else if code == "EXPORTS" {
                in_exports = true;
            } else if in_exports && !code.contains(char::is_whitespace) {
                let doc = comment
                    .and_then(|comment| comment.strip_prefix("doc:"))
                    .map(|doc| doc.trim().to_owned());
                entries.push(ExportEntry {
                    name: code.to_owned(),
                    doc,
                });
            } else {
                return Err(format!("line {}: cannot read {raw_line:?}", number + 1));
            }
        }
        let module = module.ok_or("no LIBRARY line")?;
        if entries.is_empty() {
            return Err(format!("{module}: no exports listed"));
        }
        Ok(Self { module, entries })
    }

    /// The import library's stem as the linker looks it up (`hal` for `hal.dll`).
    pub fn library_stem(&self) -> &str {
        self.module
            .rsplit_once('.')
            .map_or(self.module.as_str(), |(stem, _)| stem)
    }

    /// Whether the module exports `name`.
    pub fn exports(&self, name: &str) -> bool {
        self.entries.iter().any(|entry| entry.name == name)
    }

    /// The list as plain `.def` text for `llvm-dlltool`.
    pub fn to_def_text(&self) -> String {
        let mut text = format!("LIBRARY {}\nEXPORTS\n", self.module);
        for entry in &self.entries {
            text.push_str(&entry.name);
            text.push('\n');
        }
        text
    }

    /// Checks every name against an independent list (`None`: no independent
    /// list exists for this module). Returns the problems found.
    pub fn cross_check(&self, independent: Option<&BTreeSet<String>>) -> Vec<String> {
        let mut problems = Vec::new();
        for entry in &self.entries {
            let known = independent.is_some_and(|names| names.contains(&entry.name));
            match (known, &entry.doc) {
                (true, Some(_)) => problems.push(format!(
                    "{}: {} is in MinGW-w64's import library; drop its `; doc:` note",
                    self.module, entry.name
                )),
                (false, None) => problems.push(format!(
                    "{}: {} is in no independent export list and has no `; doc:` reference",
                    self.module, entry.name
                )),
                _ => {}
            }
        }
        problems
    }
}

/// The modules the driver may import from, in link order.
pub const MODULES: &[&str] = &["ntoskrnl.exe", "hal.dll", "portcls.sys", "ks.sys"];

/// Loads every module's export list from `xtask/kernel-exports/`.
pub fn load_all() -> Result<Vec<ModuleExports>, String> {
    let directory = workspace_root().join("xtask").join("kernel-exports");
    MODULES
        .iter()
        .map(|module| {
            let path = directory.join(format!("{module}.def"));
            let text = fs::read_to_string(&path)
                .map_err(|error| format!("read {}: {error}", path.display()))?;
            let parsed = ModuleExports::parse(&text)
                .map_err(|error| format!("{}: {error}", path.display()))?;
            if parsed.module.eq_ignore_ascii_case(module) {
                Ok(parsed)
            } else {
                Err(format!(
                    "{}: LIBRARY says {}",
                    path.display(),
                    parsed.module
                ))
            }
        })
        .collect()
}

/// MinGW-w64's import library for a module, if it ships one.
fn mingw_import_library(module: &str) -> Option<&'static str> {
    match module {
        "ntoskrnl.exe" => Some("/usr/x86_64-w64-mingw32/lib/libntoskrnl.a"),
        "hal.dll" => Some("/usr/x86_64-w64-mingw32/lib/libhal.a"),
        "ks.sys" => Some("/usr/x86_64-w64-mingw32/lib/libks.a"),
        _ => None,
    }
}

/// The function names an import library (a `.a`/`.lib` archive) provides.
pub fn import_library_names(path: &Path) -> Result<BTreeSet<String>, String> {
    let data = fs::read(path).map_err(|error| format!("read {}: {error}", path.display()))?;
    let archive = object::read::archive::ArchiveFile::parse(&*data)
        .map_err(|error| format!("{}: not an archive: {error}", path.display()))?;
    let symbols = archive
        .symbols()
        .map_err(|error| format!("{}: symbol table: {error}", path.display()))?
        .ok_or_else(|| format!("{}: archive has no symbol table", path.display()))?;
    let mut names = BTreeSet::new();
    for symbol in symbols {
        let symbol = symbol.map_err(|error| format!("{}: {error}", path.display()))?;
        let name = String::from_utf8_lossy(symbol.name());
        // Every function appears twice: `Name` (the thunk) and `__imp_Name`.
        if let Some(function) = name.strip_prefix("__imp_") {
            names.insert(function.to_owned());
        }
    }
    Ok(names)
}

/// Cross-checks every kept export list; returns a summary line.
pub fn cross_check_all(modules: &[ModuleExports]) -> Result<String, String> {
    let mut problems = Vec::new();
    let mut independent_count = 0;
    let mut documented_count = 0;
    for module in modules {
        let independent = match mingw_import_library(&module.module) {
            Some(library) => Some(import_library_names(Path::new(library))?),
            None => None,
        };
        problems.extend(module.cross_check(independent.as_ref()));
        for entry in &module.entries {
            if entry.doc.is_some() {
                documented_count += 1;
            } else {
                independent_count += 1;
            }
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{independent_count} exports confirmed by MinGW-w64 import libraries, \
             {documented_count} by documentation reference only"
        ))
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "; comment\nLIBRARY hal.dll\nEXPORTS\nKeStallExecutionProcessor\n\
                          NewThing ; doc: wdm/nf-wdm-newthing\n";

    #[test]
    fn parses_names_and_doc_references() {
        let parsed = ModuleExports::parse(SAMPLE).unwrap();
        assert_eq!(parsed.module, "hal.dll");
        assert_eq!(parsed.library_stem(), "hal");
        assert_eq!(parsed.entries.len(), 2);
        assert_eq!(
            parsed.entries[1].doc.as_deref(),
            Some("wdm/nf-wdm-newthing")
        );
        assert!(parsed.to_def_text().contains("NewThing\n"));
        assert!(!parsed.to_def_text().contains("doc:"));
    }

    #[test]
    fn cross_check_demands_a_source_for_every_name() {
        let parsed = ModuleExports::parse(SAMPLE).unwrap();
        let mingw: BTreeSet<String> = ["KeStallExecutionProcessor".to_owned()].into();
        assert!(parsed.cross_check(Some(&mingw)).is_empty());
        // Neither in MinGW nor documented: rejected.
        let empty = BTreeSet::new();
        let problems = parsed.cross_check(Some(&empty));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("KeStallExecutionProcessor"));
        // Documented but MinGW has it after all: the note is stale.
        let both: BTreeSet<String> = [
            "KeStallExecutionProcessor".to_owned(),
            "NewThing".to_owned(),
        ]
        .into();
        assert_eq!(parsed.cross_check(Some(&both)).len(), 1);
    }

    #[test]
    fn rejects_garbage_lines() {
        assert!(ModuleExports::parse("LIBRARY a.sys\nEXPORTS\nTwo Words\n").is_err());
        assert!(ModuleExports::parse("EXPORTS\nName\n").is_err());
        assert!(ModuleExports::parse("LIBRARY a.sys\nEXPORTS\n").is_err());
    }
}
