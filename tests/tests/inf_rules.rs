//! The INF against the rules `InfVerif` applies that can be checked off Windows
//! (section references, directives in the sections that allow them, DIRID 13
//! destinations, the associated service, strings, unused sections) and
//! against what the audio samples write (the `.HW` device type and security,
//! the `WinMM` subclasses). The rules run on the template and on the INF the
//! renderer makes from it, and each rule is proven to fire on a copy of the
//! INF with its defect put back.
//!
//! Sources: Learn's "INF Validation Errors and Warnings" (the `InfVerif` codes
//! quoted per rule), the INF section and directive pages, "Using a Universal
//! INF File", and Windows-driver-samples `audio/simpleaudiosample` and
//! `audio/sysvad` INFs. docs/testing.md lists them per rule.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc, reason = "test code")]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The renderer `cargo xtask cross` runs, compiled into this test from its
/// own source (xtask is a binary crate; this way the test renders with the
/// very code that writes the package's INF).
#[allow(dead_code, reason = "the test uses the renderer, not the clock")]
#[path = "../../xtask/src/inf.rs"]
mod render;

const INX: &str = include_str!("../../inf/rswavert.inx");

/// The INFs an INF may `Include` (only system INFs may be included, `InfVerif`
/// 1202) and the sections of them we may `Needs`: the ones with evidence that
/// they exist. `KS.Registration`: Learn's `DDInstall` page and `setupapi` logs of
/// Windows installs ("Install Inf Section [KS.Registration]"; ks.inf).
/// `WDMAUDIO.Registration` (and `.NT`): setupapi logs ("wdmaudio.inf line
/// 54"), `ReactOS` `media/inf/wdmaudio.inf`. No source has a
/// `WDMAUDIO.Registration.Services`.
const SYSTEM_SECTIONS: [(&str, &str); 3] = [
    ("ks.inf", "ks.registration"),
    ("wdmaudio.inf", "wdmaudio.registration"),
    ("wdmaudio.inf", "wdmaudio.registration.nt"),
];

/// `SDDL_DEVOBJ_SYS_ALL_ADM_RWX_WORLD_RWX_RES_RWX` (wdmsec.h; Learn "Windows
/// security model"), the device security simpleaudiosample and SYSVAD set.
const SAMPLE_SECURITY: &str = "D:P(A;;GA;;;SY)(A;;GRGWGX;;;BA)(A;;GRGWGX;;;WD)(A;;GRGWGX;;;RC)";
/// `FILE_DEVICE_SOUND` (devioctl.h; Learn "Specifying Device Types").
const FILE_DEVICE_SOUND: u64 = 0x1D;
/// `FLG_ADDREG_TYPE_DWORD` (Learn "INF `AddReg` Directive").
const REG_DWORD: u64 = 0x0001_0001;
/// `SPSVCINST_ASSOCSERVICE` (Learn "INF `AddService` Directive").
const ASSOCIATED_SERVICE: u64 = 0x2;
/// Run from the driver store (Learn "Using Dirids", "Run from Driver Store").
const DIRID_DRIVER_STORE: &str = "13";
/// Windows 10 1709, the first build with DIRID 13 (Learn "Run from Driver
/// Store"; the samples' "INFs using DIRID 13 should target only build 16299
/// or later" change).
const FIRST_DIRID_13_BUILD: u32 = 16_299;

macro_rules! rules {
    ($($(#[doc = $doc:literal])* $name:ident => $source:literal,)*) => {
        /// One check; `source` is the `InfVerif` code or the page it follows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        enum Rule { $($(#[doc = $doc])* $name,)* }
        impl Rule {
            const ALL: &[Self] = &[$(Self::$name,)*];
            const fn source(self) -> &'static str {
                match self { $(Self::$name => $source,)* }
            }
        }
    };
}

rules! {
    /// Plain ASCII, so the INF reads the same as ANSI or any code page.
    Encoding => "InfVerif 1003",
    /// `[Version]` with `Signature = "$Windows NT$"`.
    VersionSignature => "InfVerif 1001",
    /// `Class` and `ClassGuid` name the same (MEDIA) class.
    ClassMatchesGuid => "InfVerif 1280/1281",
    /// `Provider` is not Microsoft.
    ProviderNotMicrosoft => "InfVerif 1204",
    /// `CatalogFile = name.cat` for the signature.
    CatalogFile => "InfVerif 1233/1214",
    /// `PnpLockdown = 1`.
    PnpLockdown => "InfVerif 1324",
    /// A section is defined once.
    DuplicateSection => "InfVerif 1209",
    /// A key appears once in `[Version]`, `[Strings]` and service sections.
    DuplicateKey => "InfVerif 1294/1088",
    /// A section a directive names exists.
    SectionNotFound => "InfVerif 1203",
    /// A `[Manufacturer]` entry's Models section (with its decoration) exists.
    ModelsSectionNotFound => "InfVerif 1011/1203",
    /// A Models entry's install section exists (decorated or not).
    InstallSectionNotFound => "InfVerif 1261",
    /// A Models entry has an install section and a hardware ID.
    ModelEntryIncomplete => "InfVerif 1271",
    /// `NT<arch>.10.0...<build>`, no product type or suite mask (universal),
    /// build at least 16299 (DIRID 13).
    ModelsDecoration =>
        "InfVerif 1287/1288; Learn Using a Universal INF File, Run from Driver Store",
    /// A directive only in a section kind whose Learn page lists it.
    DirectiveNotAllowed => "InfVerif 2402/1290",
    /// No directive or section a universal INF may not use.
    NotUniversal => "Learn Using a Universal INF File (infverif /u)",
    /// Registry writes under HKR only.
    RegistryRootNotHkr => "InfVerif 1320/1321",
    /// `Include` names only system INFs.
    IncludeNotSystemInf => "InfVerif 1202",
    /// A `Needs` of another INF's section has its `Include` in the same section.
    NeedsWithoutInclude => "InfVerif 1319/1314",
    /// An `Include` comes with a `Needs`.
    IncludeWithoutNeeds => "Learn INF DDInstall.Services/.HW/.Interfaces sections",
    /// A `Needs` names a section that exists (here or in the included INF).
    NeededSectionNotFound => "InfVerif 1315; Learn CM_PROB_FAILED_INSTALL 0xC0000492",
    /// A needed section has the suffix of the section that needs it.
    NeedsSuffixMismatch => "InfVerif 1313",
    /// No direct reference to a section of an included INF.
    DirectReferenceToIncludedSection => "InfVerif 1220",
    /// A section is referenced as one kind only.
    SectionUsedAsTwoKinds => "InfVerif 1205/1206",
    /// Every install section has a `.HW` section.
    MissingHwSection => "simpleaudiosample, SYSVAD (.NT.HW)",
    /// `.HW` sets `DeviceType` `FILE_DEVICE_SOUND` (a `REG_DWORD`) and the samples'
    /// security descriptor.
    HwSettings => "simpleaudiosample, SYSVAD (AUDIOHW.AddReg); InfVerif 1431",
    /// The driver key registers the `WinMM` subclasses served by wdmaud.drv.
    WinmmSubclasses =>
        "simpleaudiosample, SYSVAD; Learn Installing Windows Multimedia System Support",
    /// Every install section has a `.Services` section with a service marked
    /// `SPSVCINST_ASSOCSERVICE`.
    NoAssociatedService => "InfVerif 1296; Learn CM_PROB_FAILED_INSTALL 0xC0000494",
    /// Only one associated service.
    SeveralAssociatedServices => "InfVerif 1211",
    /// An `AddService` names an existing service-install section.
    ServiceSectionNotFound => "InfVerif 2006",
    /// A service-install section has `ServiceType`, `StartType`,
    /// `ErrorControl` and `ServiceBinary`.
    ServiceInstallIncomplete => "InfVerif 1289/1013; Learn INF AddService Directive",
    /// The associated service is not disabled (`StartType` 4).
    DisabledAssociatedService => "InfVerif 1251",
    /// `ServiceBinary = %13%\<file>`.
    ServiceBinaryNotUnderDirid13 => "InfVerif 2085/1322",
    /// The service binary is a file the install section copies.
    ServiceBinaryNotCopied => "InfVerif 2084",
    /// A service name is installed from one service-install section.
    ServiceConfiguredDifferently => "InfVerif 1333",
    /// Service-relative registry writes go under `Parameters`.
    ServiceRegistryOutsideParameters => "InfVerif 1323",
    /// An interface class GUID is `{8-4-4-4-12}`.
    InvalidGuid => "InfVerif 1019",
    /// No `DefaultDestDir` in an INF with Include/Needs.
    DefaultDestDirWithInclude => "Learn INF DestinationDirs Section",
    /// Every destination is DIRID 13.
    DestinationNotDirid13 => "InfVerif 1322",
    /// Every copied file list has a destination.
    DestinationNotListed => "InfVerif 1275",
    /// A copied file is listed in `[SourceDisksFiles]`.
    FileNotInSourceDisksFiles => "InfVerif 1230",
    /// A source file's disk is in `[SourceDisksNames]`.
    DiskIdNotListed => "InfVerif 1273",
    /// Every `%token%` is defined in `[Strings]`.
    UndefinedString => "InfVerif 1235",
    /// Every `[Strings]` key is used (stale strings hide renamed sections).
    UnusedString => "rswavert",
    /// Every section is used.
    UnusedSection => "InfVerif 2083",
    /// No stampinf token left in the rendered INF.
    UnstampedToken => "InfVerif 1274",
    /// `DriverVer = MM/DD/YYYY,w.x.y.z` in the rendered INF.
    DriverVer => "InfVerif 1217/1218",
}

/// Which text is checked: the template may hold stampinf tokens and an empty
/// `DriverVer`; the rendered INF may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Template,
    Rendered,
}

#[derive(Debug, Clone)]
struct Finding {
    rule: Rule,
    line: usize,
    message: String,
}

/// One non-empty line of a section, comment removed.
#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    /// The text left of the first `=` outside quotes, if any.
    key: Option<String>,
    /// The text right of that `=`, or the whole line.
    value: String,
}

impl Entry {
    fn is(&self, directive: &str) -> bool {
        self.key
            .as_deref()
            .is_some_and(|key| key.eq_ignore_ascii_case(directive))
    }

    fn fields(&self) -> Vec<String> {
        split_fields(&self.value)
    }
}

#[derive(Debug, Clone)]
struct Section {
    name: String,
    line: usize,
    entries: Vec<Entry>,
}

impl Section {
    fn directives<'s>(&'s self, directive: &'s str) -> impl Iterator<Item = &'s Entry> + 's {
        self.entries.iter().filter(move |entry| entry.is(directive))
    }

    /// Every comma-separated value of every `directive` line.
    fn listed(&self, directive: &str) -> Vec<(usize, String)> {
        self.directives(directive)
            .flat_map(|entry| {
                entry
                    .fields()
                    .into_iter()
                    .filter(|field| !field.is_empty())
                    .map(|field| (entry.line, field))
            })
            .collect()
    }
}

/// Drops a `;` comment (outside quotes; `""` inside quotes is a quote).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (index, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..index],
            _ => {}
        }
    }
    line
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..index]);
            start = index + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

fn split_fields(value: &str) -> Vec<String> {
    split_outside_quotes(value, ',')
        .into_iter()
        .map(|field| field.trim().to_string())
        .collect()
}

fn unquote(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

struct Inf {
    sections: Vec<Section>,
}

impl Inf {
    fn parse(text: &str) -> Self {
        let mut sections: Vec<Section> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                sections.push(Section {
                    name: name.trim().to_string(),
                    line: index + 1,
                    entries: Vec::new(),
                });
                continue;
            }
            let parts = split_outside_quotes(line, '=');
            let entry = if parts.len() > 1 {
                Entry {
                    line: index + 1,
                    key: Some(parts[0].trim().to_string()),
                    value: line[parts[0].len() + 1..].trim().to_string(),
                }
            } else {
                Entry {
                    line: index + 1,
                    key: None,
                    value: line.to_string(),
                }
            };
            if let Some(section) = sections.last_mut() {
                section.entries.push(entry);
            }
        }
        Self { sections }
    }

    fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }
}

/// What a section is, from the directive that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fixed,
    Version,
    Models,
    Install,
    Hw,
    Services,
    Interfaces,
    InterfaceInstall,
    ServiceInstall,
    EventLogInstall,
    AddRegistry,
    AddProperty,
    FileList,
}

impl Kind {
    /// The directives each kind's Learn page lists (`None`: entries are data).
    const fn allowed(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Version => Some(&[
                "Signature",
                "Class",
                "ClassGuid",
                "Provider",
                "ExtensionId",
                "LayoutFile",
                "CatalogFile",
                "CatalogFile.nt",
                "CatalogFile.ntx86",
                "CatalogFile.ntia64",
                "CatalogFile.ntamd64",
                "CatalogFile.ntarm",
                "CatalogFile.ntarm64",
                "DriverVer",
                "PnpLockdown",
                "DriverPackageDisplayName",
                "DriverPackageType",
            ]),
            Self::Install => Some(&[
                "DriverVer",
                "CopyFiles",
                "CopyINF",
                "AddReg",
                "AddProperty",
                "Include",
                "Needs",
                "DelFiles",
                "RenFiles",
                "DelReg",
                "DelProperty",
                "FeatureScore",
                "BitReg",
                "LogConfig",
                "ProfileItems",
                "UpdateInis",
                "UpdateIniFields",
                "Ini2Reg",
                "RegisterDlls",
                "UnregisterDlls",
                "ExcludeID",
            ]),
            Self::Hw => Some(&["AddReg", "Include", "Needs", "DelReg", "BitReg"]),
            Self::Services => Some(&["AddService", "DelService", "Include", "Needs"]),
            Self::Interfaces => Some(&["AddInterface", "Include", "Needs"]),
            Self::InterfaceInstall => Some(&[
                "AddReg",
                "AddProperty",
                "DelReg",
                "DelProperty",
                "BitReg",
                "CopyFiles",
                "DelFiles",
                "RenFiles",
                "UpdateInis",
                "UpdateIniFields",
                "Ini2Reg",
            ]),
            Self::ServiceInstall => Some(&[
                "DisplayName",
                "Description",
                "ServiceType",
                "StartType",
                "ErrorControl",
                "ServiceBinary",
                "StartName",
                "AddReg",
                "DelReg",
                "BitReg",
                "LoadOrderGroup",
                "Dependencies",
                "Security",
                "RequiredPrivileges",
                "ServiceSidType",
                "DelayedAutoStart",
                "AddTrigger",
                "FailureActions",
                "BootFlags",
            ]),
            _ => None,
        }
    }
}

/// Directives a universal INF may not use (Learn "Using a Universal INF File").
const NOT_UNIVERSAL_DIRECTIVES: [&str; 13] = [
    "BitReg",
    "DelFiles",
    "DelProperty",
    "DelReg",
    "DelService",
    "Ini2Reg",
    "LogConfig",
    "ProfileItems",
    "RegisterDlls",
    "RenFiles",
    "UnregisterDlls",
    "UpdateIniFields",
    "UpdateInis",
];
/// Section suffixes a universal INF may not use (same page).
const NOT_UNIVERSAL_SUFFIXES: [&str; 3] = [".coinstallers", ".factdef", ".logconfigoverride"];

/// What the rules saw, so a clean run can be shown to have looked.
#[derive(Debug, Default)]
struct Summary {
    install_sections: Vec<String>,
    services: BTreeMap<String, String>,
    interfaces: usize,
    registry_entries: usize,
}

struct Checker<'a> {
    inf: &'a Inf,
    stage: Stage,
    findings: Vec<Finding>,
    /// Lower-case section name -> the kind it was first reached as.
    kinds: BTreeMap<String, Kind>,
    summary: Summary,
    /// File-list sections each install section copies.
    copied_by_install: BTreeMap<String, BTreeSet<String>>,
}

impl<'a> Checker<'a> {
    fn report(&mut self, rule: Rule, line: usize, message: impl Into<String>) {
        self.findings.push(Finding {
            rule,
            line,
            message: message.into(),
        });
    }

    /// Marks `name` as a section of `kind`, reached from `line`; reports a
    /// missing section (as `missing`) or a second kind. Returns the section.
    fn reach(&mut self, name: &str, kind: Kind, line: usize, missing: Rule) -> Option<&'a Section> {
        let key = name.to_ascii_lowercase();
        if SYSTEM_SECTIONS.iter().any(|(_, s)| *s == key) {
            self.report(
                Rule::DirectReferenceToIncludedSection,
                line,
                format!("[{name}] belongs to an included INF; reach it with Needs"),
            );
            return None;
        }
        let Some(section) = self.inf.section(name) else {
            self.report(missing, line, format!("section [{name}] not found"));
            return None;
        };
        match self.kinds.get(&key) {
            Some(&known) if known != kind => {
                self.report(
                    Rule::SectionUsedAsTwoKinds,
                    line,
                    format!("[{name}] used as {known:?} and as {kind:?}"),
                );
                None
            }
            Some(_) => Some(section),
            None => {
                self.kinds.insert(key, kind);
                Some(section)
            }
        }
    }

    fn check_directives(&mut self, section: &Section, kind: Kind) {
        for entry in &section.entries {
            let Some(key) = entry.key.as_deref() else {
                continue;
            };
            if NOT_UNIVERSAL_DIRECTIVES
                .iter()
                .any(|d| d.eq_ignore_ascii_case(key))
            {
                self.report(
                    Rule::NotUniversal,
                    entry.line,
                    format!("{key} is not allowed in a universal INF"),
                );
            }
            if let Some(allowed) = kind.allowed() {
                if !allowed.iter().any(|d| d.eq_ignore_ascii_case(key)) {
                    self.report(
                        Rule::DirectiveNotAllowed,
                        entry.line,
                        format!("[{}] ({kind:?}) does not permit {key}", section.name),
                    );
                }
            }
        }
    }

    /// `Include`/`Needs` of `section`, whose suffix (`""`, `hw`, `services`,
    /// `interfaces`) a needed section must share.
    fn check_include_needs(&mut self, section: &'a Section, kind: Kind, suffix: &str) {
        let included: Vec<(usize, String)> = section.listed("Include");
        for (line, file) in &included {
            if !SYSTEM_SECTIONS
                .iter()
                .any(|(inf, _)| inf.eq_ignore_ascii_case(file))
            {
                self.report(
                    Rule::IncludeNotSystemInf,
                    *line,
                    format!("{file} is not a system INF we know"),
                );
            }
        }
        let needs = section.listed("Needs");
        if !included.is_empty() && needs.is_empty() {
            self.report(
                Rule::IncludeWithoutNeeds,
                included[0].0,
                format!("[{}] includes an INF and needs nothing", section.name),
            );
        }
        for (line, needed) in needs {
            self.check_needed(section, kind, suffix, &included, line, &needed);
        }
    }

    fn check_needed(
        &mut self,
        section: &Section,
        kind: Kind,
        suffix: &str,
        included: &[(usize, String)],
        line: usize,
        needed: &str,
    ) {
        let lower = needed.to_ascii_lowercase();
        let needed_suffix = ["hw", "services", "interfaces", "coinstallers", "wdf"]
            .into_iter()
            .find(|s| lower.ends_with(&format!(".{s}")))
            .unwrap_or("");
        if needed_suffix != suffix {
            self.report(
                Rule::NeedsSuffixMismatch,
                line,
                format!(
                    "[{}] needs [{needed}], whose suffix is not .{suffix}",
                    section.name
                ),
            );
        }
        if self.inf.section(needed).is_some() {
            self.reach(needed, kind, line, Rule::NeededSectionNotFound);
            return;
        }
        let Some((inf, _)) = SYSTEM_SECTIONS.iter().find(|(_, s)| *s == lower) else {
            self.report(
                Rule::NeededSectionNotFound,
                line,
                format!("[{needed}] is in no included INF we know of (the install fails)"),
            );
            return;
        };
        if !included.iter().any(|(_, f)| f.eq_ignore_ascii_case(inf)) {
            self.report(
                Rule::NeedsWithoutInclude,
                line,
                format!(
                    "[{}] needs [{needed}] but does not include {inf}",
                    section.name
                ),
            );
        }
    }

    fn check_version(&mut self) {
        let Some(version) = self.inf.section("Version") else {
            self.report(Rule::VersionSignature, 1, "no [Version] section");
            return;
        };
        self.check_duplicate_keys(version);
        self.check_directives(version, Kind::Version);
        let value = |key: &str| {
            version
                .directives(key)
                .next()
                .map(|e| (e.line, e.value.clone()))
        };
        if !value("Signature")
            .is_some_and(|(_, v)| unquote(&v).eq_ignore_ascii_case("$Windows NT$"))
        {
            self.report(
                Rule::VersionSignature,
                version.line,
                "Signature is not $Windows NT$",
            );
        }
        let class = value("Class").map(|(_, v)| v);
        let guid = value("ClassGuid").map(|(_, v)| v.to_ascii_lowercase());
        let media = (
            class
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("MEDIA")),
            guid.as_deref() == Some("{4d36e96c-e325-11ce-bfc1-08002be10318}"),
        );
        if media.0 != media.1 {
            self.report(
                Rule::ClassMatchesGuid,
                version.line,
                format!("Class {class:?} and ClassGuid {guid:?} disagree"),
            );
        }
        let provider = value("Provider").map(|(line, v)| (line, self.resolve(&v)));
        if let Some((line, provider)) = provider {
            if provider.to_ascii_lowercase().starts_with("microsoft") {
                self.report(Rule::ProviderNotMicrosoft, line, "Provider is Microsoft");
            }
        }
        let catalog = value("CatalogFile").map(|(_, v)| v);
        if !catalog.as_deref().is_some_and(|c| {
            c.len() > 4 && c.to_ascii_lowercase().ends_with(".cat") && !c.contains(['\\', '/'])
        }) {
            self.report(Rule::CatalogFile, version.line, "no CatalogFile = name.cat");
        }
        if value("PnpLockdown").map(|(_, v)| v) != Some("1".to_string()) {
            self.report(Rule::PnpLockdown, version.line, "PnpLockdown is not 1");
        }
        if self.stage == Stage::Rendered {
            let driver_ver = value("DriverVer");
            if !driver_ver
                .as_ref()
                .is_some_and(|(_, v)| valid_driver_ver(v))
            {
                self.report(
                    Rule::DriverVer,
                    driver_ver.map_or(version.line, |(l, _)| l),
                    "DriverVer is not MM/DD/YYYY,w.x.y.z",
                );
            }
        }
    }

    fn check_duplicate_keys(&mut self, section: &Section) {
        let mut seen = BTreeSet::new();
        for entry in &section.entries {
            if let Some(key) = &entry.key {
                if !seen.insert(key.to_ascii_lowercase()) {
                    self.report(
                        Rule::DuplicateKey,
                        entry.line,
                        format!("{key} twice in [{}]", section.name),
                    );
                }
            }
        }
    }

    /// `%key%` -> its `[Strings]` value; anything else unquoted.
    fn resolve(&self, token: &str) -> String {
        let token = token.trim();
        token
            .strip_prefix('%')
            .and_then(|t| t.strip_suffix('%'))
            .and_then(|key| {
                self.inf.section("Strings").and_then(|strings| {
                    strings
                        .entries
                        .iter()
                        .find(|e| e.is(key))
                        .map(|e| unquote(&e.value).to_string())
                })
            })
            .unwrap_or_else(|| unquote(token).to_string())
    }

    fn check_manufacturer(&mut self) {
        let Some(manufacturer) = self.inf.section("Manufacturer") else {
            self.report(Rule::ModelsSectionNotFound, 1, "no [Manufacturer] section");
            return;
        };
        for entry in &manufacturer.entries {
            let fields = entry.fields();
            let Some(models) = fields.first().filter(|m| !m.is_empty()) else {
                self.report(Rule::ModelsSectionNotFound, entry.line, "no Models name");
                continue;
            };
            let decorations: Vec<&String> = fields[1..].iter().collect();
            if decorations.is_empty() {
                self.report(
                    Rule::ModelsDecoration,
                    entry.line,
                    "no NT<arch>.10.0...<build> decoration",
                );
                self.check_models(models, "", entry.line);
            }
            for decoration in decorations {
                let architecture = self.check_decoration(decoration, entry.line);
                let name = format!("{models}.{decoration}");
                self.check_models(&name, &architecture, entry.line);
            }
        }
    }

    /// Checks `NT<arch>.10.0...<build>`; returns `<arch>`.
    fn check_decoration(&mut self, decoration: &str, line: usize) -> String {
        let parts: Vec<&str> = decoration.split('.').collect();
        let architecture = parts[0]
            .get(2..)
            .filter(|_| parts[0].to_ascii_uppercase().starts_with("NT"))
            .unwrap_or_default()
            .to_string();
        let build = parts.get(5).and_then(|b| b.parse::<u32>().ok());
        let universal =
            parts.get(3).is_none_or(|p| p.is_empty()) && parts.get(4).is_none_or(|p| p.is_empty());
        if architecture.is_empty()
            || parts.get(1) != Some(&"10")
            || !universal
            || build.is_none_or(|b| b < FIRST_DIRID_13_BUILD)
        {
            self.report(
                Rule::ModelsDecoration,
                line,
                format!("{decoration} is not NT<arch>.10.0...<build {FIRST_DIRID_13_BUILD}+>"),
            );
        }
        architecture
    }

    fn check_models(&mut self, name: &str, architecture: &str, line: usize) {
        let Some(models) = self.reach(name, Kind::Models, line, Rule::ModelsSectionNotFound) else {
            return;
        };
        for entry in &models.entries {
            let fields = entry.fields();
            let install = fields.first().cloned().unwrap_or_default();
            if install.is_empty() || fields.get(1).is_none_or(String::is_empty) {
                self.report(
                    Rule::ModelEntryIncomplete,
                    entry.line,
                    "a model needs an install section and a hardware ID",
                );
                if install.is_empty() {
                    continue;
                }
            }
            let candidates = [
                format!("{install}.NT{architecture}"),
                format!("{install}.NT"),
                install.clone(),
            ];
            let Some(chosen) = candidates
                .iter()
                .find(|c| self.inf.section(c).is_some())
                .cloned()
            else {
                self.report(
                    Rule::InstallSectionNotFound,
                    entry.line,
                    format!("no install section for {install}"),
                );
                continue;
            };
            if !self.kinds.contains_key(&chosen.to_ascii_lowercase()) {
                self.check_install(&chosen, entry.line);
            }
        }
    }

    fn check_install(&mut self, name: &str, line: usize) {
        let Some(install) = self.reach(name, Kind::Install, line, Rule::InstallSectionNotFound)
        else {
            return;
        };
        self.summary.install_sections.push(install.name.clone());
        self.check_directives(install, Kind::Install);
        self.check_include_needs(install, Kind::Install, "");
        let mut copied = BTreeSet::new();
        for (line, list) in install.listed("CopyFiles") {
            if let Some(file) = list.strip_prefix('@') {
                self.check_source_file(file, line);
                copied.insert(file.to_ascii_lowercase());
            } else if let Some(section) =
                self.reach(&list, Kind::FileList, line, Rule::SectionNotFound)
            {
                copied.extend(
                    section
                        .entries
                        .iter()
                        .filter_map(|e| e.fields().first().map(|f| f.to_ascii_lowercase())),
                );
            }
        }
        self.copied_by_install
            .insert(name.to_ascii_lowercase(), copied);
        let registry = self.reach_registry(install);
        self.check_winmm(install, &registry);
        for suffix in NOT_UNIVERSAL_SUFFIXES {
            let extra = format!("{name}{suffix}");
            if let Some(section) = self.inf.section(&extra) {
                self.kinds.insert(extra.to_ascii_lowercase(), Kind::Fixed);
                self.report(
                    Rule::NotUniversal,
                    section.line,
                    format!("[{}] is not universal", section.name),
                );
            }
        }
        self.check_hw(install);
        self.check_services(install);
        self.check_interfaces(install);
    }

    /// Reaches the `AddReg` and `AddProperty` sections of `section`; returns
    /// every registry entry they hold.
    fn reach_registry(&mut self, section: &Section) -> Vec<Entry> {
        let mut entries = Vec::new();
        for (line, name) in section.listed("AddReg") {
            if let Some(reg) = self.reach(&name, Kind::AddRegistry, line, Rule::SectionNotFound) {
                entries.extend(reg.entries.iter().cloned());
            }
        }
        for (line, name) in section.listed("AddProperty") {
            self.reach(&name, Kind::AddProperty, line, Rule::SectionNotFound);
        }
        entries
    }

    fn check_winmm(&mut self, install: &Section, registry: &[Entry]) {
        let value = |key: &str, name: &str| {
            registry.iter().find_map(|e| {
                let f = e.fields();
                (f.len() >= 5
                    && f[0].eq_ignore_ascii_case("HKR")
                    && f[1].eq_ignore_ascii_case(key)
                    && f[2].eq_ignore_ascii_case(name))
                .then(|| self.resolve(&f[4]))
            })
        };
        let mut missing = Vec::new();
        if value("Drivers", "SubClasses").as_deref() != Some("wave,midi,mixer") {
            missing.push("Drivers,SubClasses \"wave,midi,mixer\"".to_string());
        }
        for class in ["wave", "midi", "mixer"] {
            let key = format!("Drivers\\{class}\\wdmaud.drv");
            if !value(&key, "Driver").is_some_and(|v| v.eq_ignore_ascii_case("wdmaud.drv")) {
                missing.push(format!("{key},Driver"));
            }
            if class != "midi" && value(&key, "Description").is_none_or(|v| v.is_empty()) {
                missing.push(format!("{key},Description"));
            }
        }
        if !missing.is_empty() {
            self.report(
                Rule::WinmmSubclasses,
                install.line,
                format!("[{}] lacks {}", install.name, missing.join(", ")),
            );
        }
    }

    fn check_hw(&mut self, install: &Section) {
        let name = format!("{}.HW", install.name);
        let Some(hw) = self.inf.section(&name) else {
            self.report(Rule::MissingHwSection, install.line, format!("no [{name}]"));
            return;
        };
        let Some(hw) = self.reach(&hw.name, Kind::Hw, install.line, Rule::MissingHwSection) else {
            return;
        };
        self.check_directives(hw, Kind::Hw);
        self.check_include_needs(hw, Kind::Hw, "hw");
        let registry = self.reach_registry(hw);
        let find = |name: &str| {
            registry.iter().find_map(|e| {
                let f = e.fields();
                (f.len() >= 5
                    && f[0].eq_ignore_ascii_case("HKR")
                    && f[1].is_empty()
                    && f[2].eq_ignore_ascii_case(name))
                .then(|| (parse_number(&f[3]), self.resolve(&f[4])))
            })
        };
        let device_type = find("DeviceType");
        let security = find("Security");
        if device_type
            .as_ref()
            .map(|(flags, value)| (*flags, parse_number(value)))
            != Some((Some(REG_DWORD), Some(FILE_DEVICE_SOUND)))
        {
            self.report(
                Rule::HwSettings,
                hw.line,
                format!("[{name}] DeviceType {device_type:?}, not REG_DWORD FILE_DEVICE_SOUND"),
            );
        }
        if security
            .as_ref()
            .map(|(flags, value)| (flags.unwrap_or(0), value.as_str()))
            != Some((0, SAMPLE_SECURITY))
        {
            self.report(
                Rule::HwSettings,
                hw.line,
                format!("[{name}] Security {security:?}, not the samples' {SAMPLE_SECURITY}"),
            );
        }
    }

    fn check_services(&mut self, install: &Section) {
        let name = format!("{}.Services", install.name);
        let services = self.inf.section(&name).and_then(|s| {
            self.reach(
                &s.name,
                Kind::Services,
                install.line,
                Rule::NoAssociatedService,
            )
        });
        let Some(services) = services else {
            self.report(
                Rule::NoAssociatedService,
                install.line,
                format!("no [{name}]"),
            );
            return;
        };
        self.check_directives(services, Kind::Services);
        self.check_include_needs(services, Kind::Services, "services");
        let mut associated = 0;
        for entry in services.directives("AddService") {
            let fields = entry.fields();
            let flags = fields.get(1).and_then(|f| parse_number(f)).unwrap_or(0);
            let is_associated = flags & ASSOCIATED_SERVICE != 0;
            associated += usize::from(is_associated);
            let service = fields.first().cloned().unwrap_or_default();
            let Some(section) = fields.get(2).filter(|s| !s.is_empty()) else {
                if !service.is_empty() {
                    self.report(
                        Rule::ServiceSectionNotFound,
                        entry.line,
                        "AddService without a section",
                    );
                }
                continue;
            };
            if let Some(event_log) = fields.get(3).filter(|s| !s.is_empty()) {
                self.reach(
                    event_log,
                    Kind::EventLogInstall,
                    entry.line,
                    Rule::SectionNotFound,
                );
            }
            self.check_service(install, &service, section, is_associated, entry.line);
        }
        if associated == 0 {
            self.report(
                Rule::NoAssociatedService,
                services.line,
                format!("[{name}] has no 0x2 service"),
            );
        } else if associated > 1 {
            self.report(
                Rule::SeveralAssociatedServices,
                services.line,
                format!("[{name}] has {associated} associated services"),
            );
        }
    }

    fn check_service(
        &mut self,
        install: &Section,
        service: &str,
        name: &str,
        associated: bool,
        line: usize,
    ) {
        let key = service.to_ascii_lowercase();
        match self.summary.services.get(&key) {
            Some(known) if !known.eq_ignore_ascii_case(name) => self.report(
                Rule::ServiceConfiguredDifferently,
                line,
                format!("service {service} from [{known}] and [{name}]"),
            ),
            _ => {
                self.summary.services.insert(key, name.to_string());
            }
        }
        let first_visit = !self.kinds.contains_key(&name.to_ascii_lowercase());
        let Some(section) = self.reach(
            name,
            Kind::ServiceInstall,
            line,
            Rule::ServiceSectionNotFound,
        ) else {
            return;
        };
        if first_visit {
            self.check_directives(section, Kind::ServiceInstall);
            self.check_duplicate_keys(section);
            for (line, reg) in section.listed("AddReg") {
                if let Some(reg) = self.reach(&reg, Kind::AddRegistry, line, Rule::SectionNotFound)
                {
                    self.check_service_registry(reg);
                }
            }
        }
        let value = |key: &str| section.directives(key).next().map(|e| e.value.clone());
        let missing: Vec<&str> = ["ServiceType", "StartType", "ErrorControl", "ServiceBinary"]
            .into_iter()
            .filter(|k| value(k).is_none_or(|v| v.is_empty()))
            .collect();
        if !missing.is_empty() {
            self.report(
                Rule::ServiceInstallIncomplete,
                section.line,
                format!("[{name}] lacks {}", missing.join(", ")),
            );
        }
        if associated && value("StartType").and_then(|v| parse_number(&v)) == Some(4) {
            self.report(
                Rule::DisabledAssociatedService,
                section.line,
                format!("[{name}] is disabled"),
            );
        }
        let binary = value("ServiceBinary").unwrap_or_default();
        let Some(file) = binary
            .strip_prefix(&format!("%{DIRID_DRIVER_STORE}%\\"))
            .filter(|f| !f.is_empty() && !f.contains('\\'))
        else {
            self.report(
                Rule::ServiceBinaryNotUnderDirid13,
                section.line,
                format!("ServiceBinary {binary} is not %13%\\<file>"),
            );
            return;
        };
        let copied = self
            .copied_by_install
            .get(&install.name.to_ascii_lowercase())
            .is_some_and(|files| files.contains(&file.to_ascii_lowercase()));
        if !copied {
            self.report(
                Rule::ServiceBinaryNotCopied,
                section.line,
                format!("{file} is not copied by [{}]", install.name),
            );
        }
    }

    fn check_service_registry(&mut self, reg: &Section) {
        for entry in &reg.entries {
            let fields = entry.fields();
            let subkey = fields.get(1).map(String::as_str).unwrap_or_default();
            let under_parameters = subkey.eq_ignore_ascii_case("Parameters")
                || subkey.to_ascii_lowercase().starts_with("parameters\\");
            if fields[0].eq_ignore_ascii_case("HKR") && !under_parameters {
                self.report(
                    Rule::ServiceRegistryOutsideParameters,
                    entry.line,
                    format!("service key {subkey:?} is not under Parameters"),
                );
            }
        }
    }

    fn check_interfaces(&mut self, install: &Section) {
        let name = format!("{}.Interfaces", install.name);
        let Some(interfaces) = self.inf.section(&name) else {
            return;
        };
        let Some(interfaces) = self.reach(
            &interfaces.name,
            Kind::Interfaces,
            install.line,
            Rule::SectionNotFound,
        ) else {
            return;
        };
        self.check_directives(interfaces, Kind::Interfaces);
        self.check_include_needs(interfaces, Kind::Interfaces, "interfaces");
        for entry in interfaces.directives("AddInterface") {
            self.summary.interfaces += 1;
            let fields = entry.fields();
            let guid = self.resolve(fields.first().map(String::as_str).unwrap_or_default());
            if !is_guid(&guid) {
                self.report(
                    Rule::InvalidGuid,
                    entry.line,
                    format!("{guid} is not a GUID"),
                );
            }
            let Some(section) = fields.get(2).filter(|s| !s.is_empty()) else {
                continue;
            };
            let first_visit = !self.kinds.contains_key(&section.to_ascii_lowercase());
            if let Some(section) = self.reach(
                section,
                Kind::InterfaceInstall,
                entry.line,
                Rule::SectionNotFound,
            ) {
                if first_visit {
                    self.check_directives(section, Kind::InterfaceInstall);
                    self.reach_registry(section);
                    for (line, list) in section.listed("CopyFiles") {
                        self.reach(&list, Kind::FileList, line, Rule::SectionNotFound);
                    }
                }
            }
        }
    }

    fn check_files(&mut self) {
        let uses_include = self
            .inf
            .sections
            .iter()
            .any(|s| s.directives("Include").next().is_some());
        let destinations = self.inf.section("DestinationDirs");
        let mut listed = BTreeSet::new();
        let mut default = false;
        for entry in destinations.iter().flat_map(|s| s.entries.iter()) {
            let key = entry.key.clone().unwrap_or_default();
            if key.eq_ignore_ascii_case("DefaultDestDir") {
                default = true;
                if uses_include {
                    self.report(
                        Rule::DefaultDestDirWithInclude,
                        entry.line,
                        "an INF with Include/Needs names each file list instead of DefaultDestDir",
                    );
                }
            } else {
                listed.insert(key.to_ascii_lowercase());
                if self.kinds.get(&key.to_ascii_lowercase()) != Some(&Kind::FileList) {
                    self.report(
                        Rule::SectionNotFound,
                        entry.line,
                        format!("DestinationDirs names [{key}], which no CopyFiles copies"),
                    );
                }
            }
            if entry.fields().first().map(String::as_str) != Some(DIRID_DRIVER_STORE) {
                self.report(
                    Rule::DestinationNotDirid13,
                    entry.line,
                    format!("{key} = {} is not DIRID 13", entry.value),
                );
            }
        }
        let lists: Vec<String> = self
            .kinds
            .iter()
            .filter(|(_, kind)| **kind == Kind::FileList)
            .map(|(name, _)| name.clone())
            .collect();
        for list in lists {
            let Some(section) = self.inf.section(&list) else {
                continue;
            };
            if !default && !listed.contains(&list) {
                self.report(
                    Rule::DestinationNotListed,
                    section.line,
                    format!("[{}] is not in [DestinationDirs]", section.name),
                );
            }
            for entry in &section.entries {
                let file = entry.fields().first().cloned().unwrap_or_default();
                self.check_source_file(&file, entry.line);
            }
        }
        self.check_source_disks();
    }

    fn check_source_file(&mut self, file: &str, line: usize) {
        let listed = self.inf.section("SourceDisksFiles").is_some_and(|s| {
            s.entries.iter().any(|e| {
                e.key
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case(file))
            })
        });
        if !listed {
            self.report(
                Rule::FileNotInSourceDisksFiles,
                line,
                format!("{file} is not in [SourceDisksFiles]"),
            );
        }
    }

    fn check_source_disks(&mut self) {
        let disks: BTreeSet<String> = self
            .inf
            .section("SourceDisksNames")
            .map(|s| s.entries.iter().filter_map(|e| e.key.clone()).collect())
            .unwrap_or_default();
        let files = self
            .inf
            .section("SourceDisksFiles")
            .map(|s| s.entries.clone())
            .unwrap_or_default();
        for entry in files {
            let disk = entry.fields().first().cloned().unwrap_or_default();
            if !disks.contains(&disk) {
                self.report(
                    Rule::DiskIdNotListed,
                    entry.line,
                    format!("disk {disk} is not in [SourceDisksNames]"),
                );
            }
        }
    }

    fn check_registry_roots(&mut self) {
        let registry: Vec<&Section> = self
            .inf
            .sections
            .iter()
            .filter(|s| self.kinds.get(&s.name.to_ascii_lowercase()) == Some(&Kind::AddRegistry))
            .collect();
        for section in registry {
            for entry in &section.entries {
                self.summary.registry_entries += 1;
                let root = entry.fields().first().cloned().unwrap_or_default();
                if !root.eq_ignore_ascii_case("HKR") {
                    self.report(
                        Rule::RegistryRootNotHkr,
                        entry.line,
                        format!("registry root {root}"),
                    );
                }
            }
        }
    }

    fn check_strings(&mut self) {
        let defined: BTreeMap<String, usize> = self
            .inf
            .section("Strings")
            .map(|s| {
                s.entries
                    .iter()
                    .filter_map(|e| e.key.as_ref().map(|k| (k.to_ascii_lowercase(), e.line)))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(strings) = self.inf.section("Strings") {
            self.check_duplicate_keys(strings);
        }
        let mut used = BTreeSet::new();
        for section in &self.inf.sections {
            if section.name.eq_ignore_ascii_case("Strings") {
                continue;
            }
            for entry in &section.entries {
                let text = entry.key.as_ref().map_or_else(
                    || entry.value.clone(),
                    |key| format!("{key}={}", entry.value),
                );
                for token in tokens(&text) {
                    let lower = token.to_ascii_lowercase();
                    if defined.contains_key(&lower) {
                        used.insert(lower);
                    } else {
                        self.findings.push(Finding {
                            rule: Rule::UndefinedString,
                            line: entry.line,
                            message: format!("%{token}% is not in [Strings]"),
                        });
                    }
                }
            }
        }
        for (key, line) in defined {
            if !used.contains(&key) {
                self.report(
                    Rule::UnusedString,
                    line,
                    format!("string {key} is not used"),
                );
            }
        }
    }

    fn check_sections(&mut self) {
        let mut seen = BTreeSet::new();
        for section in &self.inf.sections {
            let lower = section.name.to_ascii_lowercase();
            if !seen.insert(lower.clone()) {
                self.findings.push(Finding {
                    rule: Rule::DuplicateSection,
                    line: section.line,
                    message: format!("[{}] defined again", section.name),
                });
            }
            if lower == "classinstall32" || lower.starts_with("classinstall32.") {
                self.findings.push(Finding {
                    rule: Rule::NotUniversal,
                    line: section.line,
                    message: format!("[{}] is not universal", section.name),
                });
            }
            if !self.kinds.contains_key(&lower) {
                self.findings.push(Finding {
                    rule: Rule::UnusedSection,
                    line: section.line,
                    message: format!("[{}] is not referenced or used", section.name),
                });
            }
        }
    }
}

/// `%name%` tokens of a line, without DIRIDs (`%13%`) and `%%`.
fn tokens(text: &str) -> Vec<String> {
    let parts: Vec<&str> = text.split('%').collect();
    let mut out = Vec::new();
    let mut index = 1;
    while index + 1 < parts.len() {
        let token = parts[index];
        if !token.is_empty() && !token.chars().all(|c| c.is_ascii_digit()) {
            out.push(token.to_string());
        }
        index += 2;
    }
    out
}

fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    text.strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .map_or_else(
            || text.parse().ok(),
            |hex| u64::from_str_radix(hex, 16).ok(),
        )
}

fn is_guid(text: &str) -> bool {
    let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        return false;
    };
    let groups: Vec<&str> = inner.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn valid_driver_ver(value: &str) -> bool {
    let fields = split_fields(value);
    let date: Vec<&str> = fields[0].split('/').collect();
    let date_ok = date.len() == 3
        && date
            .iter()
            .zip([2, 2, 4])
            .all(|(part, n)| part.len() == n && part.chars().all(|c| c.is_ascii_digit()))
        && parse_number(date[0]).is_some_and(|m| (1..=12).contains(&m))
        && parse_number(date[1]).is_some_and(|d| (1..=31).contains(&d));
    let version_ok = fields.get(1).is_some_and(|v| {
        let parts: Vec<&str> = v.split('.').collect();
        parts.len() == 4 && parts.iter().all(|p| p.parse::<u16>().is_ok())
    });
    date_ok && version_ok
}

/// Every rule on `text`; the summary says what was looked at.
fn check(text: &str, stage: Stage) -> (Vec<Finding>, Summary) {
    let inf = Inf::parse(text);
    let mut checker = Checker {
        inf: &inf,
        stage,
        findings: Vec::new(),
        kinds: BTreeMap::new(),
        summary: Summary::default(),
        copied_by_install: BTreeMap::new(),
    };
    if let Some((line, _)) = text.lines().enumerate().find(|(_, l)| !l.is_ascii()) {
        checker.report(Rule::Encoding, line + 1, "a character outside ASCII");
    }
    if stage == Stage::Rendered {
        if let Some((line, _)) = text.lines().enumerate().find(|(_, l)| l.contains("$ARCH$")) {
            checker.report(Rule::UnstampedToken, line + 1, "$ARCH$ left for stampinf");
        }
    }
    for fixed in [
        "Version",
        "SourceDisksNames",
        "SourceDisksFiles",
        "DestinationDirs",
        "Manufacturer",
        "Strings",
    ] {
        checker
            .kinds
            .insert(fixed.to_ascii_lowercase(), Kind::Fixed);
    }
    checker.check_version();
    checker.check_manufacturer();
    checker.check_files();
    checker.check_registry_roots();
    checker.check_strings();
    checker.check_sections();
    let Checker {
        findings, summary, ..
    } = checker;
    // A section shared by both models is reported once.
    let mut seen = BTreeSet::new();
    let findings = findings
        .into_iter()
        .filter(|f| seen.insert((f.rule, f.line, f.message.clone())))
        .collect();
    (findings, summary)
}

fn rendered() -> String {
    rendered_for(&render::ARCH_AMD64)
}

fn rendered_for(architecture: &render::Architecture) -> String {
    let version = render::four_part_version(env!("CARGO_PKG_VERSION")).unwrap();
    let date = render::Date {
        year: 2026,
        month: 1,
        day: 2,
    };
    render::stamp(INX, architecture, date, &version).unwrap()
}

fn describe(findings: &[Finding]) -> String {
    let mut text = String::new();
    for f in findings {
        let _ = writeln!(
            text,
            "  line {}: {:?} ({}): {}",
            f.line,
            f.rule,
            f.rule.source(),
            f.message
        );
    }
    text
}

fn assert_clean(text: &str, stage: Stage) -> Summary {
    let (findings, summary) = check(text, stage);
    assert!(
        findings.is_empty(),
        "{stage:?} INF breaks rules:\n{}",
        describe(&findings)
    );
    summary
}

/// What a clean run must have looked at: both models, their one service,
/// every interface (ten per cable for all eight cables the INF declares,
/// `wavert_miniport::adapter::MAX_CABLES`, the AC'97's ten and the HD
/// Audio controller's ten) and the registry entries.
fn assert_looked_at_everything(summary: &Summary) {
    assert_eq!(summary.install_sections, ["Cable.NT", "Ac97.NT", "Hda.NT"]);
    assert_eq!(
        summary.services.iter().collect::<Vec<_>>(),
        [(&"rswavert".to_string(), &"Rswavert.Service".to_string())]
    );
    assert_eq!(
        summary.interfaces,
        10 * (wavert_miniport::adapter::MAX_CABLES + 2)
    );
    assert!(summary.registry_entries >= 30, "{summary:?}");
}

#[test]
fn the_template_passes_every_rule() {
    assert_looked_at_everything(&assert_clean(INX, Stage::Template));
}

#[test]
fn the_rendered_inf_passes_every_rule() {
    let inf = rendered();
    assert!(inf.contains("NTamd64.10.0...16299"));
    assert_looked_at_everything(&assert_clean(&inf, Stage::Rendered));
}

/// The ARM64 INF offers the cable alone (the AC'97 needs x86 port I/O, the
/// HD Audio glue x64 register forms) and, with their sections gone, still
/// passes every rule: nothing left unreferenced, nothing referenced that
/// was dropped.
#[test]
fn the_arm64_inf_passes_every_rule_with_the_cable_alone() {
    let inf = rendered_for(&render::ARCH_ARM64);
    assert!(inf.contains("NTarm64.10.0...16299"));
    assert!(!inf.contains("NTamd64"));
    assert!(!inf.contains("= Ac97, PCI\\VEN_8086&DEV_2415"));
    assert!(!inf.contains("= Hda, PCI"));
    assert!(!inf.contains("[Hda."));
    let summary = assert_clean(&inf, Stage::Rendered);
    assert_eq!(summary.install_sections, ["Cable.NT"]);
    // Ten interfaces for each of the eight cables the INF declares.
    assert_eq!(summary.interfaces, 8 * 10);
}

/// Its control: the same ARM64 rendering with one AC'97 section put back is
/// caught as an unreferenced section.
#[test]
fn an_ac97_section_left_in_the_arm64_inf_is_reported() {
    let inf = rendered_for(&render::ARCH_ARM64).replace(
        "[Cable.NT]",
        "[Ac97.NT.HW]\r\nAddReg = Rswavert.HW.AddReg\r\n\r\n[Cable.NT]",
    );
    let (findings, _) = check(&inf, Stage::Rendered);
    assert!(
        findings
            .iter()
            .any(|f| f.rule == Rule::UnusedSection && f.message.contains("Ac97.NT.HW")),
        "{}",
        describe(&findings)
    );
}

// ---------------------------------------------------------------------------
// Each rule on a copy of the INF with its defect put back.

/// One way to break the INF text.
enum Edit {
    /// Replace the first occurrence (which must exist).
    Replace(&'static str, &'static str),
    /// Replace the second occurrence (the AC'97's copy of a cable line).
    ReplaceSecond(&'static str, &'static str),
    /// Replace every occurrence.
    ReplaceAll(&'static str, &'static str),
    /// Add lines right after a section's header.
    Insert(&'static str, &'static str),
    /// Remove a section, header to the next header.
    Remove(&'static str),
    /// Add lines at the end.
    Append(&'static str),
}

impl Edit {
    fn apply(&self, text: &str) -> String {
        match *self {
            Self::Replace(from, to) => replace_nth(text, from, to, 0),
            Self::ReplaceSecond(from, to) => replace_nth(text, from, to, 1),
            Self::ReplaceAll(from, to) => {
                assert!(text.contains(from), "{from:?} is not in the INF");
                text.replace(from, to)
            }
            Self::Insert(section, lines) => {
                let header = format!("[{section}]");
                let start = text.find(&header).unwrap_or_else(|| panic!("no {header}"));
                let end = start + header.len();
                format!("{}\n{lines}{}", &text[..end], &text[end..])
            }
            Self::Remove(section) => {
                let header = format!("[{section}]");
                let start = text.find(&header).unwrap_or_else(|| panic!("no {header}"));
                let end = text[start + 1..]
                    .find("\n[")
                    .map_or(text.len(), |i| start + i + 2);
                format!("{}{}", &text[..start], &text[end..])
            }
            Self::Append(lines) => format!("{text}\n{lines}\n"),
        }
    }
}

/// Replaces the `nth` (0-based) occurrence of `from`, which must exist.
fn replace_nth(text: &str, from: &str, to: &str, nth: usize) -> String {
    let (index, _) = text
        .match_indices(from)
        .nth(nth)
        .unwrap_or_else(|| panic!("{from:?} (#{nth}) is not in the INF"));
    format!("{}{to}{}", &text[..index], &text[index + from.len()..])
}

/// The cable's service again, for the AC'97 from another section.
const SECOND_SERVICE: &str = "[Ac97.Service]\nServiceType = 1\nStartType = 2\n\
                              ErrorControl = 1\nServiceBinary = %13%\\rswavert.sys";
/// A value in the service key itself rather than under `Parameters`.
const SERVICE_VALUE: &str = "[Service.AddReg]\nHKR,,Tuning,0x00010001,1";

/// The defects, each with the rule that must report it, on the template.
const TEMPLATE_DEFECTS: &[(Rule, &str, &[Edit])] = {
    use Edit::{Append, Insert, Remove, Replace, ReplaceAll, ReplaceSecond};
    use Rule as R;
    &[
        (
            R::Encoding,
            "a non-ASCII provider",
            &[Replace("rswavert project", "rswavert pröject")],
        ),
        (
            R::VersionSignature,
            "a Windows 9x signature",
            &[Replace("$WINDOWS NT$", "$CHICAGO$")],
        ),
        (
            R::ClassMatchesGuid,
            "another class name",
            &[Replace("= MEDIA", "= Image")],
        ),
        (
            R::ProviderNotMicrosoft,
            "Microsoft as provider",
            &[Replace(
                "ProviderName      = \"rswavert project\"",
                "ProviderName = Microsoft",
            )],
        ),
        (
            R::CatalogFile,
            "no catalog",
            &[Replace("CatalogFile = rswavert.cat\n", "")],
        ),
        (
            R::PnpLockdown,
            "lockdown off",
            &[Replace("PnpLockdown = 1", "PnpLockdown = 0")],
        ),
        (
            R::DuplicateSection,
            "a file list twice",
            &[Append("[Rswavert.CopyFiles]\nrswavert.sys")],
        ),
        (
            R::DuplicateKey,
            "StartType twice",
            &[Insert("Rswavert.Service", "StartType = 2")],
        ),
        (
            R::DuplicateKey,
            "a string twice",
            &[Insert("Strings", "DiskName = \"disk 2\"")],
        ),
        (
            R::SectionNotFound,
            "AddReg of a missing section",
            &[Replace(
                "Rswavert.AddReg, Cable.AddReg",
                "Rswavert.AddReg, Cable.Gone.AddReg",
            )],
        ),
        (
            R::SectionNotFound,
            "a dangling interface install section",
            &[Replace("Cable.I.WaveRender\n", "Cable.I.WaveRendr\n")],
        ),
        (
            R::ModelsSectionNotFound,
            "a Models section for another build",
            &[Replace(
                "[Models.NT$ARCH$.10.0...16299]",
                "[Models.NT$ARCH$.10.0...22000]",
            )],
        ),
        (
            R::InstallSectionNotFound,
            "a misspelt install section",
            &[Replace("= Cable, ROOT", "= Cabel, ROOT")],
        ),
        (
            R::ModelEntryIncomplete,
            "a model without hardware ID",
            &[Replace("= Ac97, PCI\\VEN_8086&DEV_2415", "= Ac97")],
        ),
        (
            R::ModelsDecoration,
            "a build before DIRID 13",
            &[ReplaceAll("...16299", "...15063")],
        ),
        (
            R::ModelsDecoration,
            "a product type (not universal)",
            &[ReplaceAll("10.0...16299", "10.0.1..16299")],
        ),
        (
            R::DirectiveNotAllowed,
            "AddService in the install section",
            &[Insert(
                "Cable.NT",
                "AddService = rswavert, 0x00000002, Rswavert.Service",
            )],
        ),
        (
            R::DirectiveNotAllowed,
            "AddInterface in .HW",
            &[Insert(
                "Cable.NT.HW",
                "AddInterface = %KSCATEGORY_AUDIO%, x, Cable.I.WaveRender",
            )],
        ),
        (
            R::DirectiveNotAllowed,
            "AddReg in [Version]",
            &[Insert("Version", "AddReg = Rswavert.AddReg")],
        ),
        (
            R::DirectiveNotAllowed,
            "CopyFiles in .Services",
            &[Insert(
                "Cable.NT.Services",
                "CopyFiles = Rswavert.CopyFiles",
            )],
        ),
        (
            R::NotUniversal,
            "DelReg",
            &[Insert("Ac97.NT", "DelReg = Ac97.AddReg")],
        ),
        (
            R::NotUniversal,
            "a co-installers section",
            &[Append("[Cable.NT.CoInstallers]\nAddReg = Rswavert.AddReg")],
        ),
        (
            R::RegistryRootNotHkr,
            "a HKLM write",
            &[Replace(
                "HKR,,Driver,,rswavert.sys",
                "HKLM,SOFTWARE\\rswavert,Driver,,rswavert.sys",
            )],
        ),
        (
            R::IncludeNotSystemInf,
            "an OEM INF included",
            &[Replace(
                "= ks.inf, wdmaudio.inf",
                "= ks.inf, wdmaudio.inf, oem7.inf",
            )],
        ),
        (
            R::NeedsWithoutInclude,
            "WDMAUDIO.Registration needed, wdmaudio.inf not included",
            &[Replace("= ks.inf, wdmaudio.inf", "= ks.inf")],
        ),
        (
            R::IncludeWithoutNeeds,
            "an Include alone in .Services",
            &[Insert("Cable.NT.Services", "Include = wdmaudio.inf")],
        ),
        (
            R::NeededSectionNotFound,
            "the .Services Include/Needs of wdmaudio.inf put back",
            &[
                Insert(
                    "Cable.NT.Services",
                    "Needs = WDMAUDIO.Registration.Services",
                ),
                Insert("Cable.NT.Services", "Include = wdmaudio.inf"),
            ],
        ),
        (
            R::NeedsSuffixMismatch,
            "an install section needed from .Services",
            &[
                Insert("Ac97.NT.Services", "Needs = WDMAUDIO.Registration"),
                Insert("Ac97.NT.Services", "Include = wdmaudio.inf"),
            ],
        ),
        (
            R::DirectReferenceToIncludedSection,
            "AddReg of ks.inf's section",
            &[Replace(
                "Rswavert.AddReg, Cable.AddReg",
                "Rswavert.AddReg, KS.Registration",
            )],
        ),
        (
            R::SectionUsedAsTwoKinds,
            "a registry section copied as files",
            &[Replace(
                "CopyFiles = Rswavert.CopyFiles",
                "CopyFiles = Rswavert.AddReg",
            )],
        ),
        (R::MissingHwSection, "no .HW", &[Remove("Cable.NT.HW")]),
        (
            R::HwSettings,
            "another device type",
            &[Replace("0x00010001,0x0000001D", "0x00010001,0x7")],
        ),
        (
            R::HwSettings,
            "the device type as a string",
            &[Replace("0x00010001,0x0000001D", ",0x1D")],
        ),
        (
            R::HwSettings,
            "administrators-only security (SDDL_DEVOBJ_SYS_ALL_ADM_ALL)",
            &[Replace(SAMPLE_SECURITY, "D:P(A;;GA;;;BA)(A;;GA;;;SY)")],
        ),
        (
            R::WinmmSubclasses,
            "wave only",
            &[Replace("\"wave,midi,mixer\"", "\"wave\"")],
        ),
        (
            R::WinmmSubclasses,
            "no mixer description",
            &[Replace(
                "HKR,Drivers\\mixer\\wdmaud.drv,Description,,%Ac97.DeviceDesc%",
                "",
            )],
        ),
        (
            R::NoAssociatedService,
            "the service not associated",
            &[Replace(
                "0x00000002, Rswavert.Service",
                "0x00000000, Rswavert.Service",
            )],
        ),
        (
            R::NoAssociatedService,
            "no .Services",
            &[Remove("Ac97.NT.Services")],
        ),
        (
            R::SeveralAssociatedServices,
            "two function drivers",
            &[Insert(
                "Cable.NT.Services",
                "AddService = rswavert2, 0x00000002, Rswavert.Service",
            )],
        ),
        (
            R::ServiceSectionNotFound,
            "a dangling service section",
            &[Replace(
                "0x00000002, Rswavert.Service",
                "0x00000002, Rswavert.Svc",
            )],
        ),
        (
            R::ServiceInstallIncomplete,
            "no ErrorControl",
            &[Replace("ErrorControl  = 1", "")],
        ),
        (
            R::DisabledAssociatedService,
            "a disabled service",
            &[Replace("StartType     = 3", "StartType = 4")],
        ),
        (
            R::ServiceBinaryNotUnderDirid13,
            "the binary in system32\\drivers",
            &[Replace("%13%\\rswavert.sys", "%12%\\rswavert.sys")],
        ),
        (
            R::ServiceBinaryNotCopied,
            "a binary nothing copies",
            &[Replace("%13%\\rswavert.sys", "%13%\\rswavert2.sys")],
        ),
        (
            R::ServiceConfiguredDifferently,
            "one service from two sections",
            &[
                ReplaceSecond("0x00000002, Rswavert.Service", "0x00000002, Ac97.Service"),
                Append(SECOND_SERVICE),
            ],
        ),
        (
            R::ServiceRegistryOutsideParameters,
            "a service value beside Parameters",
            &[
                Insert("Rswavert.Service", "AddReg = Service.AddReg"),
                Append(SERVICE_VALUE),
            ],
        ),
        (
            R::InvalidGuid,
            "a short category GUID",
            &[Replace(
                "{6994AD04-93EF-11D0-A3CC-00A0C9223196}",
                "{6994AD04-93EF-11D0-A3CC-00A0C922319}",
            )],
        ),
        (
            R::DefaultDestDirWithInclude,
            "the old DefaultDestDir",
            &[Replace("Rswavert.CopyFiles = 13", "DefaultDestDir = 13")],
        ),
        (
            R::DestinationNotDirid13,
            "system32\\drivers",
            &[Replace(
                "Rswavert.CopyFiles = 13",
                "Rswavert.CopyFiles = 12",
            )],
        ),
        (
            R::DestinationNotListed,
            "no destination",
            &[Replace("Rswavert.CopyFiles = 13\n", "")],
        ),
        (
            R::FileNotInSourceDisksFiles,
            "a file not in the package",
            &[Insert("Rswavert.CopyFiles", "rswavert.pdb")],
        ),
        (
            R::DiskIdNotListed,
            "a second disk",
            &[Replace("rswavert.sys = 1", "rswavert.sys = 2")],
        ),
        (
            R::UndefinedString,
            "a misspelt string",
            &[Replace("%Cable.DeviceDesc% =", "%Cable.DeviceName% =")],
        ),
        (
            R::UnusedString,
            "a stale string",
            &[Insert("Strings", "Cable.ServiceDesc = \"left over\"")],
        ),
        (
            R::UnusedSection,
            "a section nothing names",
            &[Append("[Cable.Old.AddReg]\nHKR,,Driver,,x.sys")],
        ),
    ]
};

/// The defects on the rendered INF.
const RENDERED_DEFECTS: &[(Rule, &str, &[Edit])] = &[
    (
        Rule::UnstampedToken,
        "$ARCH$ in the rendered INF",
        &[Edit::Replace("NTamd64.10.0", "NT$ARCH$.10.0")],
    ),
    (
        Rule::DriverVer,
        "an ISO date",
        &[Edit::Replace("01/02/2026,", "2026-01-02,")],
    ),
];

struct Defect {
    rule: Rule,
    what: &'static str,
    stage: Stage,
    inf: String,
}

fn defects() -> Vec<Defect> {
    let rendered = rendered();
    let template = TEMPLATE_DEFECTS.iter().map(|d| (d, Stage::Template, INX));
    let stamped = RENDERED_DEFECTS
        .iter()
        .map(|d| (d, Stage::Rendered, rendered.as_str()));
    template
        .chain(stamped)
        .map(|(&(rule, what, edits), stage, base)| Defect {
            rule,
            what,
            stage,
            inf: edits
                .iter()
                .fold(base.to_string(), |text, edit| edit.apply(&text)),
        })
        .collect()
}

#[test]
fn every_rule_fires_on_its_defect() {
    let mut failures = String::new();
    let rendered = rendered();
    for defect in defects() {
        assert!(
            defect.inf != INX && defect.inf != rendered,
            "{}: the copy is the INF",
            defect.what
        );
        let (findings, _) = check(&defect.inf, defect.stage);
        if !findings.iter().any(|f| f.rule == defect.rule) {
            let _ = writeln!(
                failures,
                "{:?} did not fire on {}; found:\n{}",
                defect.rule,
                defect.what,
                describe(&findings)
            );
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn every_rule_has_a_defect() {
    let covered: BTreeSet<Rule> = defects().iter().map(|d| d.rule).collect();
    let uncovered: Vec<&Rule> = Rule::ALL.iter().filter(|r| !covered.contains(r)).collect();
    assert!(
        uncovered.is_empty(),
        "rules no defect proves: {uncovered:?}"
    );
}
