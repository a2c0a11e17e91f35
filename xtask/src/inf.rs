//! Renders the driver's `.inx` into an `.inf` the way `stampinf` does on
//! Windows: `$ARCH$` becomes the architecture decoration and the `DriverVer`
//! line gets a date and a four-part version.

use std::fmt::Write as _;

/// Architecture decoration for x64 (`NTamd64`).
pub const ARCH_AMD64: &str = "amd64";

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
pub fn stamp(inx: &str, architecture: &str, date: Date, version: &str) -> Result<String, String> {
    let mut section = String::new();
    let mut stamped_driver_ver = false;
    let mut output = String::with_capacity(inx.len());
    for line in inx.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.to_ascii_lowercase();
        }
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        if section == "[version]" && key.eq_ignore_ascii_case("DriverVer") {
            let _ = write!(
                output,
                "DriverVer   = {:02}/{:02}/{:04},{version}",
                date.month, date.day, date.year
            );
            stamped_driver_ver = true;
        } else {
            output.push_str(&line.replace("$ARCH$", architecture));
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
        let inf = stamp(inx, ARCH_AMD64, date, "0.1.0.0").unwrap();
        assert!(inf.contains("DriverVer   = 11/20/2026,0.1.0.0\r\n"));
        assert!(inf.contains("NTamd64.10.0...16299"));
        assert!(inf.contains("$WINDOWS NT$"));
        assert!(!inf.contains("$ARCH$"));
    }

    #[test]
    fn refuses_templates_it_cannot_stamp() {
        let date = Date {
            year: 2026,
            month: 1,
            day: 1,
        };
        assert!(stamp("[Version]\nSignature=x\n", ARCH_AMD64, date, "1.0.0.0").is_err());
        assert!(stamp(
            "[Version]\nDriverVer=\n[X]\na=$KMDFVERSION$\n",
            ARCH_AMD64,
            date,
            "1.0.0.0"
        )
        .is_err());
    }
}
