//! Renders the driver's `.inx` into an `.inf` the way `stampinf` does on
//! Windows: `$ARCH$` becomes the architecture decoration and the `DriverVer`
//! line gets a date and a four-part version. One step more than stampinf: an
//! architecture can leave models out (their Models lines and every section
//! named after their install section), for back-ends its build lacks.

use std::fmt::Write as _;

/// One architecture an INF is rendered for.
#[derive(Debug)]
pub struct Architecture {
    /// The decoration, `NT<decoration>` (Learn, "INF Manufacturer Section").
    pub decoration: &'static str,
    /// Install sections of models this architecture's driver cannot serve:
    /// their Models lines and the sections `<name>` and `<name>.*` are left out.
    pub models_left_out: &'static [&'static str],
}

/// x64 (`NTamd64`): every model.
pub const ARCH_AMD64: Architecture = Architecture {
    decoration: "amd64",
    models_left_out: &[],
};

/// ARM64 (`NTarm64`): the cable only. The AC'97 back-end is programmed with
/// x86 port I/O (`in`/`out`), which ARM64 processors do not have, and the
/// HD Audio controller's registers with x64 `mov` forms (`src/mmio.rs`; no
/// ARM64 forms are written), so the ARM64 driver is built without either
/// and its INF must not offer the devices.
pub const ARCH_ARM64: Architecture = Architecture {
    decoration: "arm64",
    models_left_out: &["Ac97", "Hda"],
};

/// The `%name%` tokens of a text, lowercased (DIRIDs such as `%13%` too;
/// they never name a string).
fn percent_tokens(text: &str) -> std::collections::BTreeSet<String> {
    text.split('%')
        .skip(1)
        .step_by(2)
        .map(str::to_ascii_lowercase)
        .collect()
}

impl Architecture {
    /// The template's lines with their section (lowercased, with brackets),
    /// split into those this architecture keeps and those it leaves out.
    fn split_lines<'a>(&self, inx: &'a str) -> (Vec<(String, &'a str)>, Vec<&'a str>) {
        let mut section = String::new();
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for line in inx.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('[') {
                section = trimmed.to_ascii_lowercase();
            }
            let section_name = section.trim_start_matches('[').trim_end_matches(']');
            if self.leaves_out_section(section_name)
                || (section_name.starts_with("models.")
                    && !trimmed.starts_with(';')
                    && self.leaves_out_model_line(trimmed))
            {
                dropped.push(line);
            } else {
                kept.push((section.clone(), line));
            }
        }
        (kept, dropped)
    }

    /// Whether a section belongs to a model this architecture leaves out.
    fn leaves_out_section(&self, lowercase_name: &str) -> bool {
        self.models_left_out.iter().any(|model| {
            let model = model.to_ascii_lowercase();
            lowercase_name == model
                || lowercase_name
                    .strip_prefix(model.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }

    /// Whether a Models line installs a model this architecture leaves out.
    fn leaves_out_model_line(&self, line: &str) -> bool {
        let install = line
            .split_once('=')
            .and_then(|(_, value)| value.split(',').next())
            .map(str::trim)
            .unwrap_or_default();
        self.models_left_out
            .iter()
            .any(|model| install.eq_ignore_ascii_case(model))
    }
}

/// A calendar date (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day 1..=31.
    pub day: u32,
}

impl Date {
    /// The civil date of a count of days since 1970-01-01 (proleptic Gregorian).
    pub fn from_days_since_epoch(days: i64) -> Self {
        // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_index + 2) / 5 + 1;
        let month = if month_index < 10 {
            month_index + 3
        } else {
            month_index - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month: u32::try_from(month).unwrap_or(1),
            day: u32::try_from(day).unwrap_or(1),
        }
    }

    /// Today, or the day of `SOURCE_DATE_EPOCH` when set (reproducible builds).
    pub fn today() -> Self {
        let seconds = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|value| value.parse::<i64>().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0))
            });
        Self::from_days_since_epoch(seconds.div_euclid(86_400))
    }
}

/// Turns a Cargo version (`0.1.0`, `1.2.3-beta.1`) into an INF four-part version.
pub fn four_part_version(cargo_version: &str) -> Result<String, String> {
    let core = cargo_version.split(['-', '+']).next().unwrap_or_default();
    let mut parts: Vec<u16> = Vec::new();
    for part in core.split('.') {
        parts.push(
            part.parse().map_err(|_| {
                format!("version part {part:?} of {cargo_version} is not 0..=65535")
            })?,
        );
    }
    if parts.is_empty() || parts.len() > 4 {
        return Err(format!(
            "cannot make a four-part version of {cargo_version}"
        ));
    }
    parts.resize(4, 0);
    Ok(parts
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

/// Stamps an `.inx`. Fails if the template has no `DriverVer` line in
/// `[Version]` or still holds an unknown `$...$` token afterwards.
pub fn stamp(
    inx: &str,
    architecture: &Architecture,
    date: Date,
    version: &str,
) -> Result<String, String> {
    let (kept, dropped) = architecture.split_lines(inx);
    // Strings only the left-out sections used go with them.
    let dropped_tokens = percent_tokens(&dropped.join("\n"));
    let kept_tokens = percent_tokens(
        &kept
            .iter()
            .filter(|(section, _)| section != "[strings]")
            .map(|(_, line)| *line)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let mut stamped_driver_ver = false;
    let mut output = String::with_capacity(inx.len());
    for (section, line) in kept {
        let trimmed = line.trim();
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        if section == "[strings]"
            && dropped_tokens.contains(&key.to_ascii_lowercase())
            && !kept_tokens.contains(&key.to_ascii_lowercase())
        {
            continue;
        }
        if section == "[version]" && key.eq_ignore_ascii_case("DriverVer") {
            let _ = write!(
                output,
                "DriverVer   = {:02}/{:02}/{:04},{version}",
                date.month, date.day, date.year
            );
            stamped_driver_ver = true;
        } else {
            output.push_str(&line.replace("$ARCH$", architecture.decoration));
        }
        output.push_str("\r\n");
    }
    if !stamped_driver_ver {
        return Err("the .inx has no DriverVer line in [Version]".to_owned());
    }
    if let Some(token) = output.split('$').nth(1).filter(|token| {
        !token.is_empty() && token.chars().all(|c| c.is_ascii_uppercase() || c == '_')
    }) {
        if token != "WINDOWS NT" {
            return Err(format!("unknown stampinf token ${token}$ left in the .inx"));
        }
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(
            Date::from_days_since_epoch(0),
            Date {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        // 2000-02-29, a leap day in a century leap year.
        assert_eq!(
            Date::from_days_since_epoch(11_016),
            Date {
                year: 2000,
                month: 2,
                day: 29
            }
        );
        assert_eq!(
            Date::from_days_since_epoch(20_777),
            Date {
                year: 2026,
                month: 11,
                day: 20
            }
        );
    }

    #[test]
    fn versions() {
        assert_eq!(four_part_version("0.1.0").unwrap(), "0.1.0.0");
        assert_eq!(four_part_version("1.2.3-beta.1").unwrap(), "1.2.3.0");
        assert!(four_part_version("1.70000.0").is_err());
        assert!(four_part_version("1.2.3.4.5").is_err());
    }

    #[test]
    fn stamps_architecture_and_driver_ver() {
        let inx = "[Version]\nSignature=\"$WINDOWS NT$\"\nDriverVer = ; stamped\n\
                   [Manufacturer]\n%M%=S,NT$ARCH$.10.0...16299\n";
        let date = Date {
            year: 2026,
            month: 11,
            day: 20,
        };
        let inf = stamp(inx, &ARCH_AMD64, date, "0.1.0.0").unwrap();
        assert!(inf.contains("DriverVer   = 11/20/2026,0.1.0.0\r\n"));
        assert!(inf.contains("NTamd64.10.0...16299"));
        assert!(inf.contains("$WINDOWS NT$"));
        assert!(!inf.contains("$ARCH$"));
    }

    #[test]
    fn arm64_leaves_out_the_port_io_models_and_only_them() {
        let inx = "[Version]\nDriverVer = ; stamped\n\
                   [Manufacturer]\n%M%=Models,NT$ARCH$.10.0...16299\n\
                   [Models.NT$ARCH$.10.0...16299]\n\
                   %Cable%  = Cable, ROOT\\cable\n\
                   %Ac97%   = Ac97, PCI\\VEN_8086&DEV_2415\n\
                   [Cable.NT]\nCopyFiles = F\n\
                   [Ac97.NT]\nCopyFiles = F\n\
                   [Ac97.NT.Services]\nAddService = s, 2, S\n\
                   [Ac97Like.NT]\nCopyFiles = F\n\
                   [Strings]\nCable = \"c\"\nAc97 = \"a\"\nM = \"m\"\n";
        let date = Date {
            year: 2026,
            month: 1,
            day: 1,
        };
        let x64 = stamp(inx, &ARCH_AMD64, date, "1.0.0.0").unwrap();
        let arm64 = stamp(inx, &ARCH_ARM64, date, "1.0.0.0").unwrap();
        assert!(x64.contains("= Ac97, PCI") && x64.contains("[Ac97.NT.Services]"));
        assert!(arm64.contains("[Models.NTarm64.10.0...16299]"));
        assert!(arm64.contains("= Cable, ROOT") && arm64.contains("[Cable.NT]"));
        assert!(!arm64.contains("= Ac97, PCI"), "{arm64}");
        assert!(!arm64.contains("[Ac97.NT"), "{arm64}");
        assert!(!arm64.contains("AddService = s"), "{arm64}");
        // A section that merely starts with the model's name stays.
        assert!(arm64.contains("[Ac97Like.NT]"), "{arm64}");
        // Strings only the dropped lines used go; the others stay.
        assert!(x64.contains("Ac97 = \"a\""));
        assert!(!arm64.contains("Ac97 = \"a\""), "{arm64}");
        assert!(arm64.contains("Cable = \"c\"") && arm64.contains("M = \"m\""));
    }

    #[test]
    fn refuses_templates_it_cannot_stamp() {
        let date = Date {
            year: 2026,
            month: 1,
            day: 1,
        };
        assert!(stamp("[Version]\nSignature=x\n", &ARCH_AMD64, date, "1.0.0.0").is_err());
        assert!(stamp(
            "[Version]\nDriverVer=\n[X]\na=$KMDFVERSION$\n",
            &ARCH_AMD64,
            date,
            "1.0.0.0"
        )
        .is_err());
    }
}
