//! The usual failures, recognised from what Windows reports, each with what
//! the user should do about it.

/// `CM_PROB_FAILED_START` (cfgmgr32.h): "This device cannot start. (Code 10)".
pub const CM_PROB_FAILED_START: u32 = 10;
/// `CM_PROB_FAILED_INSTALL` (cfgmgr32.h): Code 28, the drivers are not installed.
pub const CM_PROB_FAILED_INSTALL: u32 = 28;
/// `CM_PROB_FAILED_ADD` (cfgmgr32.h): Code 31, `AddDevice` failed.
pub const CM_PROB_FAILED_ADD: u32 = 31;
/// `CM_PROB_DRIVER_FAILED_LOAD` (cfgmgr32.h): Code 39, the driver did not load.
pub const CM_PROB_DRIVER_FAILED_LOAD: u32 = 39;
/// `CM_PROB_UNSIGNED_DRIVER` (cfgmgr32.h): Code 52, "Windows cannot verify
/// the digital signature for the drivers required for this device" (Learn,
/// "Device Manager error messages").
pub const CM_PROB_UNSIGNED_DRIVER: u32 = 52;

/// `AUDCLNT_E_DEVICE_IN_USE` (audioclient.h): another client holds the
/// endpoint in exclusive mode.
pub const AUDCLNT_E_DEVICE_IN_USE: u32 = 0x8889_000A;
/// `AUDCLNT_E_EXCLUSIVE_MODE_NOT_ALLOWED` (audioclient.h): the endpoint's
/// "Allow applications to take exclusive control" box is cleared.
pub const AUDCLNT_E_EXCLUSIVE_MODE_NOT_ALLOWED: u32 = 0x8889_000E;
/// `E_ACCESSDENIED` (winerror.h), what `SetupAPI` returns unelevated.
pub const E_ACCESSDENIED: u32 = 0x8007_0005;
/// A failure the tool recognises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The tool runs without administrator rights.
    NotElevated,
    /// The machine does not load test-signed drivers.
    TestSigningOff,
    /// Code 52 on a device: the driver's signature is not trusted.
    UnsignedDriver {
        /// The device instance.
        device: String,
    },
    /// Another problem code on a device.
    DeviceProblem {
        /// The device instance.
        device: String,
        /// The `CM_PROB_*` code.
        code: u32,
    },
    /// The cable's device runs but Windows made no endpoint of it.
    EndpointsMissing {
        /// The endpoints expected (render, capture).
        expected: Vec<String>,
    },
    /// Another application holds the endpoint exclusively.
    EndpointHeldExclusively {
        /// The endpoint's name.
        endpoint: String,
    },
    /// Exclusive mode is turned off for the endpoint.
    ExclusiveModeNotAllowed {
        /// The endpoint's name.
        endpoint: String,
    },
    /// No cable device exists.
    NoDevice,
}

impl Problem {
    /// What to tell the user: what is wrong and what to do.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Self::NotElevated => {
                "this command changes drivers and devices: run it from an \
                 elevated prompt (right-click Terminal or Command Prompt, \"Run as administrator\")"
                    .to_owned()
            }
            Self::TestSigningOff => "test signing is off, so Windows will not load this \
                 test-signed driver (Code 52). Turn it on with `bcdedit /set testsigning on` \
                 from an elevated prompt and restart (Secure Boot must be off in the firmware \
                 settings for bcdedit to change it); turn it off again with \
                 `bcdedit /set testsigning off` after uninstalling"
                .to_owned(),
            Self::UnsignedDriver { device } => format!(
                "{device}: Code 52, Windows cannot verify the driver's signature. Either test \
                 signing is off (`bcdedit /set testsigning on`, restart) or the package's test \
                 certificate is not trusted (`rswavert-setup install --trust-certificate`)"
            ),
            Self::DeviceProblem { device, code } => format!(
                "{device}: Code {code} ({}); `rswavert-setup status` and \
                 C:\\Windows\\INF\\setupapi.dev.log say more",
                problem_name(*code)
            ),
            Self::EndpointsMissing { expected } => format!(
                "the cable device runs but Windows shows none of its endpoints ({}): \
                 the Windows Audio service may still be starting (wait a few seconds and run \
                 `status` again), or the endpoints are disabled (Sound settings, \"All sound \
                 devices\")",
                expected.join(", ")
            ),
            Self::EndpointHeldExclusively { endpoint } => format!(
                "{endpoint} is held in exclusive mode by another application: close it (or \
                 clear \"Allow applications to take exclusive control\" in that application's \
                 device) and run `check` again"
            ),
            Self::ExclusiveModeNotAllowed { endpoint } => format!(
                "{endpoint} does not allow exclusive mode: tick \"Allow applications to take \
                 exclusive control of this device\" (Sound control panel, the device's \
                 Properties, Advanced), or run `check --shared`"
            ),
            Self::NoDevice => {
                "no rswavert cable device: run `rswavert-setup install` first".to_owned()
            }
        }
    }
}

/// The name Learn's "Device Manager error messages" page gives a code.
#[must_use]
pub const fn problem_name(code: u32) -> &'static str {
    match code {
        CM_PROB_FAILED_START => "the device cannot start",
        CM_PROB_FAILED_INSTALL => "the drivers for this device are not installed",
        CM_PROB_FAILED_ADD => "Windows cannot load the drivers required for this device",
        CM_PROB_DRIVER_FAILED_LOAD => "the driver may be corrupted or missing",
        CM_PROB_UNSIGNED_DRIVER => "Windows cannot verify the driver's digital signature",
        _ => "see Learn, \"Device Manager error messages\"",
    }
}

/// A device's problem code as a [`Problem`], or `None` for a working device.
#[must_use]
pub fn device_problem(device: &str, code: u32) -> Option<Problem> {
    match code {
        0 => None,
        CM_PROB_UNSIGNED_DRIVER => Some(Problem::UnsignedDriver {
            device: device.to_owned(),
        }),
        code => Some(Problem::DeviceProblem {
            device: device.to_owned(),
            code,
        }),
    }
}

/// Whether the boot options have test signing on.
///
/// The options come from the registry value
/// `HKLM\SYSTEM\CurrentControlSet\Control\SystemStartOptions`, which holds
/// the options the machine booted with, e.g. ` NOEXECUTE=OPTIN  TESTSIGNING`.
#[must_use]
pub fn test_signing_on(system_start_options: &str) -> bool {
    system_start_options
        .split_whitespace()
        .any(|option| option.eq_ignore_ascii_case("TESTSIGNING"))
}

/// What must be fixed before `install` can work, in the order to fix it.
///
/// A signed catalog from a production signature would not need test
/// signing; the packages this project builds are test-signed at best.
#[must_use]
pub fn install_blockers(elevated: bool, system_start_options: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !elevated {
        problems.push(Problem::NotElevated);
    }
    if !test_signing_on(system_start_options) {
        problems.push(Problem::TestSigningOff);
    }
    problems
}

/// The problem an `HRESULT` from `SetupAPI` or `WASAPI` names, if it is one of
/// the usual ones.
#[must_use]
pub fn problem_of_hresult(hresult: u32, endpoint: &str) -> Option<Problem> {
    match hresult {
        E_ACCESSDENIED => Some(Problem::NotElevated),
        AUDCLNT_E_DEVICE_IN_USE => Some(Problem::EndpointHeldExclusively {
            endpoint: endpoint.to_owned(),
        }),
        AUDCLNT_E_EXCLUSIVE_MODE_NOT_ALLOWED => Some(Problem::ExclusiveModeNotAllowed {
            endpoint: endpoint.to_owned(),
        }),
        _ => None,
    }
}

/// The text that marks an endpoint as the cable's.
///
/// Windows names an
/// endpoint after its device and its KS filter (the INF's "rswavert virtual
/// audio cable", "rswavert cable output" / "rswavert cable input"), and the
/// tool looks for it in the endpoint's `PKEY_Device_FriendlyName`,
/// `PKEY_Device_DeviceDesc` and `PKEY_DeviceInterface_FriendlyName` alike,
/// since which of them carries which name is not verified here.
pub const CABLE_MARK: &str = "rswavert";

/// Whether an endpoint, by its names, is the cable's.
#[must_use]
pub fn is_cable_endpoint(names: &[String]) -> bool {
    names
        .iter()
        .any(|name| name.to_ascii_lowercase().contains(CABLE_MARK))
}

/// The cable endpoints missing: `render` and `capture` are the names of
/// every active endpoint of that data flow.
#[must_use]
pub fn missing_endpoints(render: &[Vec<String>], capture: &[Vec<String>]) -> Vec<String> {
    let mut missing = Vec::new();
    if !render.iter().any(|names| is_cable_endpoint(names)) {
        missing.push("the cable's render endpoint (rswavert cable output)".to_owned());
    }
    if !capture.iter().any(|names| is_cable_endpoint(names)) {
        missing.push("the cable's capture endpoint (rswavert cable input)".to_owned());
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_signing_is_read_from_the_boot_options() {
        assert!(test_signing_on(" NOEXECUTE=OPTIN  TESTSIGNING"));
        assert!(test_signing_on("testsigning"));
        assert!(!test_signing_on(" NOEXECUTE=OPTIN"));
        // Not fooled by a longer option that contains the word.
        assert!(!test_signing_on(" NOTESTSIGNINGX"));
    }

    #[test]
    fn install_says_what_blocks_it_in_order() {
        assert_eq!(install_blockers(true, " TESTSIGNING"), []);
        assert_eq!(
            install_blockers(false, ""),
            [Problem::NotElevated, Problem::TestSigningOff]
        );
        assert!(Problem::TestSigningOff
            .message()
            .contains("bcdedit /set testsigning off"));
        assert!(Problem::NotElevated
            .message()
            .contains("Run as administrator"));
    }

    #[test]
    fn problem_codes_and_hresults_name_the_usual_failures() {
        assert_eq!(device_problem("ROOT\\MEDIA\\0000", 0), None);
        let code52 = device_problem("ROOT\\MEDIA\\0000", 52).unwrap();
        assert!(code52.message().contains("Code 52"), "{}", code52.message());
        assert!(code52.message().contains("--trust-certificate"));
        let code10 = device_problem("ROOT\\MEDIA\\0000", 10).unwrap();
        assert!(code10
            .message()
            .contains("Code 10 (the device cannot start)"));
        assert_eq!(
            problem_of_hresult(0x8889_000A, "rswavert cable output"),
            Some(Problem::EndpointHeldExclusively {
                endpoint: "rswavert cable output".to_owned()
            })
        );
        assert_eq!(
            problem_of_hresult(0x8007_0005, "x"),
            Some(Problem::NotElevated)
        );
        assert_eq!(problem_of_hresult(0x8000_4005, "x"), None);
    }

    #[test]
    fn endpoints_missing_are_named() {
        let names = |list: &[&str]| list.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let render = vec![
            names(&["Speakers", "RSWAVERT virtual audio cable"]),
            names(&["Speakers", "Realtek"]),
        ];
        let capture = vec![names(&["Microphone", "Realtek"])];
        let missing = missing_endpoints(&render, &capture);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].contains("capture"), "{missing:?}");
        let capture = vec![names(&["Line", "rswavert cable input"])];
        assert!(missing_endpoints(&render, &capture).is_empty());
        assert_eq!(missing_endpoints(&[], &[]).len(), 2);
    }
}
