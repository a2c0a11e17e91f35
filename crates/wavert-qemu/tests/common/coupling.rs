//! The clock coupling the miniport-on-QEMU tests share (`ac97_miniport.rs`,
//! `hda_miniport.rs`; the register-level tests drive QEMU's clock
//! themselves and do not include this file).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use wavert_emulator::machine::{Machine as Emu, QPC_PER_MS};
use wavert_emulator::port::InterruptLine;
use wavert_qemu::Machine as Qemu;

const MS_NS: u64 = 1_000_000;

/// What [`couple_clocks`] started.
pub struct Coupling {
    /// The emulator timer (stop it before shutting QEMU down).
    pub timer: u64,
    /// The most ISR runs one 1 ms step needed.
    pub services_per_step: Arc<AtomicU64>,
}

/// Couples QEMU's clock to the emulator's: a 1 ms emulator timer steps
/// QEMU by 1 ms, raises the emulator's interrupt line while QEMU's IRQ
/// `irq` is asserted (the miniport's ISR must claim every one, and 16 in
/// one step means it is stuck), then runs `dpc` (which runs the DPC the ISR
/// queued, if it queued one). While `hold_isr` is set, the timer steps QEMU
/// without running the ISR.
pub fn couple_clocks(
    emu: &Arc<Emu>,
    qemu: &Arc<Qemu>,
    line: &Arc<InterruptLine>,
    irq: u8,
    hold_isr: Option<Arc<AtomicBool>>,
    dpc: impl Fn() + Send + Sync + 'static,
) -> Coupling {
    let services_per_step = Arc::new(AtomicU64::new(0));
    let (qemu, line) = (Arc::clone(qemu), Arc::clone(line));
    let max = Arc::clone(&services_per_step);
    let timer = emu.start_timer(
        QPC_PER_MS,
        Arc::new(move |_now| {
            qemu.clock_step(MS_NS).unwrap();
            if hold_isr.as_ref().is_some_and(|h| h.load(Ordering::Acquire)) {
                return;
            }
            let mut services = 0;
            while qemu.interrupt_pending() {
                assert!(services < 16, "IRQ {irq} stuck");
                assert!(
                    line.raise(),
                    "the miniport's ISR did not claim its interrupt"
                );
                services += 1;
            }
            max.fetch_max(services, Ordering::Relaxed);
            dpc();
        }),
    );
    Coupling {
        timer,
        services_per_step,
    }
}
