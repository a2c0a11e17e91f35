//! Helpers the QEMU test files share: the one QEMU setup per test binary,
//! and reading back what QEMU's `wav` back-end wrote.

use std::sync::OnceLock;

use wavert_qemu::{ensure_qemu, QemuInstall};

/// QEMU with the qtest accelerator, set up once per test binary. A QEMU
/// that cannot be set up fails the test with the reason: a QEMU test that
/// silently skips proves nothing.
pub fn install() -> &'static QemuInstall {
    static INSTALL: OnceLock<Result<QemuInstall, String>> = OnceLock::new();
    match INSTALL.get_or_init(ensure_qemu) {
        Ok(install) => install,
        Err(reason) => panic!("QEMU could not be set up, so the QEMU tests cannot run: {reason}"),
    }
}

/// The `data` chunk of a RIFF/WAVE file, checking the header QEMU
/// finalised on SIGTERM.
pub fn wav_data(file: &[u8]) -> Vec<u8> {
    let wav = wavert_emulator::signal::wav_data(file).unwrap();
    let frame_bytes = usize::from(wav.format.channels) * usize::from(wav.format.bits / 8);
    assert_eq!(
        wav.declared_frames as usize * frame_bytes,
        wav.data.len(),
        "data chunk length matches the file"
    );
    wav.data.to_vec()
}

/// Bytes of whole silent stereo 16-bit frames at the start.
pub fn leading_silence(pcm: &[u8]) -> usize {
    pcm.chunks_exact(4)
        .take_while(|f| f == &[0, 0, 0, 0])
        .count()
        * 4
}
