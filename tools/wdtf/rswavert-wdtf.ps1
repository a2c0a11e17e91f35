<#
.SYNOPSIS
  rswavert on a test machine through WDTF: find the cable devices, run simple
  I/O on their endpoints, disable/enable each device, cycle sleep, and check
  after each step that the devices have no problem code and the endpoints
  come back.

.DESCRIPTION
  Needs the Windows Device Testing Framework (installed with the WDK or the
  HLK client) and an elevated PowerShell. Run from the driver package folder
  (rswavert-setup.exe must sit beside this script or be on PATH: the endpoint
  checks are `rswavert-setup status` and `rswavert-setup check --shared`).

  WDTF objects and names used (Learn, "Creating WDTF Scenarios",
  "Action Interfaces", "Device Fundamentals Test Parameters"):
    * WDTF2.WDTF                     the aggregation object (IWDTF2)
    * DeviceDepot.Query(SDEL)        the targets; DriverBinaryNames=rswavert.sys
    * GetInterface("PNP")            IWDTFPNPAction2: DisableDevice, EnableDevice
    * GetInterface("SimpleIOStressProc")  IWDTFSimpleIOStressAction2: Start/Stop
    * SystemDepot.ThisSystem.GetInterface("System")  IWDTFSystemAction2: Sleep
  UNVERIFIED: this script was written on Linux and has not run; the
  interface names above are from Learn's pages, the Sleep argument values
  (2 = S3, 4 = S4 here) and the SimpleIO plug-in's behaviour on audio
  endpoints are not confirmed. Report what fails.

.PARAMETER Cycles
  Disable/enable and sleep cycles (default 3).
.PARAMETER SleepStates
  The system sleep states to cycle (default S3; add 4 for hibernate).
#>
param(
    [int]$Cycles = 3,
    [int[]]$SleepStates = @(2),
    [int]$IOSeconds = 10
)

$ErrorActionPreference = 'Stop'
$setup = Join-Path $PSScriptRoot 'rswavert-setup.exe'
if (-not (Test-Path $setup)) { $setup = 'rswavert-setup.exe' }
$failures = 0

function Step([string]$what) { Write-Host "== $what" }

function Check-Endpoints([string]$after) {
    # `status`: the devices without problem codes and both cable endpoints
    # present; `check --shared`: audio still flows (bit-exactness is not
    # required in shared mode; glitches and the position test are).
    & $setup status | Write-Host
    if ($LASTEXITCODE -ne 0) { Write-Host "FAIL after ${after}: status"; $script:failures++ }
    & $setup check --shared --seconds 3 | Write-Host
    if ($LASTEXITCODE -ne 0) { Write-Host "FAIL after ${after}: check"; $script:failures++ }
}

function Check-Problems($devices, [string]$after) {
    foreach ($device in $devices) {
        # IWDTFTarget2::Eval with SDEL: true when the device has a problem code.
        if ($device.Eval('ProblemCode!=0')) {
            Write-Host "FAIL after ${after}: $($device.GetValue('DeviceID')) has problem code $($device.GetValue('ProblemCode'))"
            $script:failures++
        }
    }
}

function Run-SimpleIO($devices, [int]$seconds) {
    $actions = @()
    foreach ($device in $devices) {
        try {
            $io = $device.GetInterface('SimpleIOStressProc')
            $io.Start()
            $actions += $io
        } catch {
            Write-Host "note: no WDTF simple I/O plug-in for $($device.GetValue('DeviceID')): $_ (the setup tool's check covers I/O)"
        }
    }
    Start-Sleep -Seconds $seconds
    foreach ($io in $actions) { $io.Stop() }
}

$wdtf = New-Object -ComObject WDTF2.WDTF
Step 'find the rswavert devices'
$devices = @($wdtf.DeviceDepot.Query('DriverBinaryNames=rswavert.sys AND IsPhantom=false'))
if ($devices.Count -eq 0) {
    Write-Host 'FAIL: no device runs rswavert.sys: run `rswavert-setup install` first'
    exit 1
}
foreach ($device in $devices) { Write-Host "device: $($device.GetValue('DeviceID'))" }
Check-Problems $devices 'install'
Check-Endpoints 'install'
Run-SimpleIO $devices $IOSeconds

$system = $wdtf.SystemDepot.ThisSystem.GetInterface('System')
for ($cycle = 1; $cycle -le $Cycles; $cycle++) {
    Step "cycle $cycle of ${Cycles}: disable/enable"
    foreach ($device in $devices) {
        $pnp = $device.GetInterface('PNP')
        $pnp.DisableDevice()
        $pnp.EnableDevice()
    }
    Start-Sleep -Seconds 3   # the audio service rebuilds the endpoints
    Check-Problems $devices "disable/enable $cycle"
    Check-Endpoints "disable/enable $cycle"
    Run-SimpleIO $devices $IOSeconds

    foreach ($state in $SleepStates) {
        Step "cycle $cycle of ${Cycles}: sleep state $state"
        $system.Sleep($state)
        Start-Sleep -Seconds 5
        Check-Problems $devices "sleep $state, cycle $cycle"
        Check-Endpoints "sleep $state, cycle $cycle"
        Run-SimpleIO $devices $IOSeconds
    }
}

if ($failures -eq 0) { Write-Host 'PASS'; exit 0 }
Write-Host "FAIL: $failures check(s) failed"
exit 1
