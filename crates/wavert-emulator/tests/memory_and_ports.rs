//! The memory model and the port objects, driven through their vtables.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

use portcls_sys::windows_abi;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use portcls_sys::*;
use wavert_com::ComPtr;
use wavert_com::KernelEvent;
use wavert_emulator::cable::{start_cable_adapter, CableOptions};
use wavert_emulator::irql;
use wavert_emulator::machine::{ClockMode, Machine};
use wavert_emulator::memory::{
    Fault, Fragmentation, Layout, MemoryConfig, PhysicalMemory, HIGH_RAM_BASE, PAGE_SIZE,
};
use wavert_emulator::port::{
    new_resource_list, InterruptLine, Port, PortKind, PortList, PortStream, ResourceDescriptor,
};
use wavert_miniport::ac97::{Ac97Resources, DeviceKind};
use wavert_miniport::Platform as _;

fn memory(fragmentation: Fragmentation) -> PhysicalMemory {
    PhysicalMemory::anonymous(MemoryConfig {
        size_bytes: 4 << 20,
        fragmentation,
        ..MemoryConfig::default()
    })
    .unwrap()
}

#[test]
fn shuffled_pages_are_scattered_and_the_view_maps_each_at_its_place() {
    let mem = memory(Fragmentation::Shuffled(7));
    let mdl = mem.allocate_pages(u64::MAX, 16 * PAGE_SIZE).unwrap();
    let pages = mem.page_addresses(mdl).unwrap();
    assert_eq!(pages.len(), 16);
    assert!(
        pages.windows(2).any(|w| w[1] != w[0] + PAGE_SIZE as u64),
        "pages came out contiguous"
    );
    assert!(
        pages.iter().all(|&p| p >= 1 << 20),
        "low memory must stay reserved"
    );
    let base = mem.map(mdl).unwrap();
    // SAFETY: the mapping covers 16 pages and is ours until unmapped.
    let view = unsafe { std::slice::from_raw_parts_mut(base, 16 * PAGE_SIZE) };
    for (i, chunk) in view.chunks_mut(PAGE_SIZE).enumerate() {
        chunk.fill(i as u8 + 1);
    }
    for (i, &address) in pages.iter().enumerate() {
        let mut page = vec![0; PAGE_SIZE];
        mem.read_physical(address, &mut page).unwrap();
        assert!(
            page.iter().all(|&b| b == i as u8 + 1),
            "page {i} holds another page's data"
        );
    }
    mem.unmap(base, mdl);
    mem.free(mdl);
    assert_eq!(
        (mem.pages_in_use(), mem.live_mdls(), mem.live_mappings()),
        (0, 0, 0)
    );
    assert!(mem.violations().is_empty());
}

#[test]
fn contiguous_allocation_is_contiguous_and_fragmentation_off_gives_ascending_pages() {
    let mem = memory(Fragmentation::Contiguous);
    let a = mem.allocate_pages(u64::MAX, 4 * PAGE_SIZE).unwrap();
    let pages = mem.page_addresses(a).unwrap();
    assert!(pages.windows(2).all(|w| w[1] == w[0] + PAGE_SIZE as u64));
    let shuffled = memory(Fragmentation::Shuffled(3));
    let b = shuffled
        .allocate_contiguous(0, u64::MAX, 8 * PAGE_SIZE)
        .unwrap();
    let pages = shuffled.page_addresses(b).unwrap();
    assert!(pages.windows(2).all(|w| w[1] == w[0] + PAGE_SIZE as u64));
}

#[test]
fn misuse_is_recorded_not_crashed_on() {
    let mem = memory(Fragmentation::Shuffled(1));
    let mdl = mem.allocate_pages(u64::MAX, PAGE_SIZE).unwrap();
    let base = mem.map(mdl).unwrap();
    mem.free(mdl);
    assert!(mem.violations().iter().any(|v| v.contains("still mapped")));
    mem.free(mdl);
    assert!(mem.violations().iter().any(|v| v.contains("unknown")));
    mem.unmap(base, mdl);
    assert_eq!(mem.live_mappings(), 0);
}

#[test]
fn a_stale_access_through_an_unmapped_view_is_recorded_and_resumed() {
    let mem = memory(Fragmentation::Shuffled(4));
    let mdl = mem.allocate_pages(u64::MAX, 2 * PAGE_SIZE).unwrap();
    let base = mem.map(mdl).unwrap();
    mem.unmap(base, mdl);
    assert!(mem.violations().is_empty());
    // A driver that still copies through the view it unmapped.
    let stale = base.wrapping_add(PAGE_SIZE + 0x10);
    // SAFETY: deliberately stale: the model keeps the range reserved and
    // inaccessible, so the access faults into its handler, which records it
    // and backs the page with fresh memory before the access runs again.
    unsafe { stale.write_volatile(0xAB) };
    // SAFETY: as above; the page is now the handler's fresh memory.
    assert_eq!(unsafe { stale.read_volatile() }, 0xAB);
    let violations = mem.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0]
            .contains("accessed after UnmapAllocatedPages (1 page(s), first at offset 0x1010)"),
        "{violations:?}"
    );
    // Reported once; the next view lands elsewhere.
    assert_eq!(mem.violations().len(), 1);
    let again = mem.map(mdl).unwrap();
    assert_ne!(again, base, "an unmapped view's addresses stay reserved");
    mem.unmap(again, mdl);
    mem.free(mdl);
    assert_eq!(mem.violations().len(), 1);
}

#[test]
fn a_freed_page_written_after_its_free_is_reported() {
    let mem = memory(Fragmentation::Contiguous);
    let mdl = mem.allocate_pages(u64::MAX, 2 * PAGE_SIZE).unwrap();
    let pages = mem.page_addresses(mdl).unwrap();
    mem.free(mdl);
    assert_eq!(
        mem.check_freed_pages(),
        0,
        "the free poisons, nothing wrote"
    );
    // A DMA engine nobody stopped writes the second page.
    mem.write_physical(pages[1] + 8, &[1, 2, 3]).unwrap();
    assert_eq!(mem.check_freed_pages(), 1);
    let violations = mem.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains(&format!(
            "page frame {:#x} was written after FreePagesFromMdl",
            pages[1]
        )),
        "{violations:?}"
    );
    // Checked again when the frame is handed out again.
    mem.write_physical(pages[0], &[9]).unwrap();
    let all = mem.allocate_pages(u64::MAX, 4 << 20).unwrap();
    assert!(mem.page_addresses(all).unwrap().contains(&pages[0]));
    assert_eq!(mem.violations().len(), 2);
    mem.free(all);
}

#[test]
fn injected_faults_all_or_nothing_and_partial_and_the_budget() {
    let mem = memory(Fragmentation::Shuffled(2));
    mem.inject(0, Fault::Fail);
    mem.inject(1, Fault::Partial { pages: 3 });
    mem.inject(3, Fault::Fail);
    assert!(mem.allocate_pages(u64::MAX, 8 * PAGE_SIZE).is_none());
    let partial = mem.allocate_pages(u64::MAX, 8 * PAGE_SIZE).unwrap();
    assert_eq!(mem.page_count(partial), Some(3));
    let whole = mem.allocate_pages(u64::MAX, 2 * PAGE_SIZE).unwrap();
    assert!(mem.map(whole).is_none(), "call 3 (a map) was told to fail");
    mem.free(partial);
    mem.free(whole);
    mem.set_page_budget(Some(4));
    let capped = mem.allocate_pages(u64::MAX, 8 * PAGE_SIZE).unwrap();
    assert_eq!(mem.page_count(capped), Some(4));
    assert!(mem.allocate_contiguous(0, u64::MAX, PAGE_SIZE).is_none());
    mem.free(capped);
    assert_eq!(mem.pages_in_use(), 0);
    assert_eq!(mem.allocation_calls().len(), 6);
}

#[test]
fn high_address_limit_is_respected() {
    let mem = memory(Fragmentation::Shuffled(9));
    let limit = (2 << 20) - 1;
    let mdl = mem.allocate_pages(limit, 32 * PAGE_SIZE).unwrap();
    assert!(mem
        .page_addresses(mdl)
        .unwrap()
        .iter()
        .all(|&p| p + PAGE_SIZE as u64 - 1 <= limit));
}

#[test]
fn a_file_backed_ram_is_addressed_by_file_offset() {
    let path = std::env::temp_dir().join(format!("wavert-emu-ram-{}", std::process::id()));
    let mem = PhysicalMemory::with_file(
        &path,
        MemoryConfig {
            size_bytes: 2 << 20,
            layout: Layout::Low,
            ..MemoryConfig::default()
        },
    )
    .unwrap();
    mem.write_physical(0x10_0000, b"guest").unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 2 << 20);
    assert_eq!(&bytes[0x10_0000..0x10_0005], b"guest");
    assert!(mem.write_physical((2 << 20) - 2, b"xyz").is_err());
    drop(mem);
    std::fs::remove_file(path).unwrap();
}

const PAGE: u64 = PAGE_SIZE as u64;
const MIB: u64 = 1 << 20;

/// 8 MiB in the default layout: 4 MiB at 0 (the first reserved), 4 MiB
/// from 4 GiB.
fn split_memory(fragmentation: Fragmentation) -> PhysicalMemory {
    PhysicalMemory::anonymous(MemoryConfig {
        size_bytes: 8 * MIB,
        fragmentation,
        ..MemoryConfig::default()
    })
    .unwrap()
}

/// Whether every page of `pages` lies wholly in `low..=high`.
fn all_within(pages: &[u64], low: u64, high: u64) -> bool {
    pages.iter().all(|&p| p >= low && p + PAGE - 1 <= high)
}

#[test]
fn the_default_layout_puts_half_of_ram_above_4_gib_and_nothing_in_the_hole() {
    let mem = split_memory(Fragmentation::Shuffled(11));
    let layout = mem.layout();
    assert_eq!((layout.below_4g(), layout.above_4g()), (4 * MIB, 4 * MIB));
    let mut pages = Vec::new();
    while let Some(mdl) = mem.allocate_pages(u64::MAX, 64 * PAGE_SIZE) {
        pages.extend(mem.page_addresses(mdl).unwrap());
    }
    let low = pages.iter().filter(|&&p| p < HIGH_RAM_BASE).count() as u64;
    let high = pages.len() as u64 - low;
    // Every free page once: 3 MiB low above the reserved MiB, 4 MiB high.
    assert_eq!((low, high), (3 * MIB / PAGE, 4 * MIB / PAGE));
    assert!(pages
        .iter()
        .all(|&p| (MIB..4 * MIB).contains(&p)
            || (HIGH_RAM_BASE..HIGH_RAM_BASE + 4 * MIB).contains(&p)));
    // Shuffled across both parts: the first request already has both.
    let mem = split_memory(Fragmentation::Shuffled(11));
    let mdl = mem.allocate_pages(u64::MAX, 8 * PAGE_SIZE).unwrap();
    let first = mem.page_addresses(mdl).unwrap();
    assert!(first.iter().any(|&p| p >= HIGH_RAM_BASE), "{first:x?}");
    assert!(first.iter().any(|&p| p < HIGH_RAM_BASE), "{first:x?}");
    // Small RAM is all low, as QEMU does when RAM is under the limit.
    let small = PhysicalMemory::anonymous(MemoryConfig {
        size_bytes: 4 * MIB,
        layout: Layout::Split { below_4g: 8 * MIB },
        ..MemoryConfig::default()
    })
    .unwrap();
    assert_eq!(small.layout().above_4g(), 0);
}

#[test]
fn high_ram_is_the_file_past_the_low_part_as_qemu_maps_it() {
    let path = std::env::temp_dir().join(format!("wavert-emu-split-{}", std::process::id()));
    let mem = PhysicalMemory::with_file(
        &path,
        MemoryConfig {
            size_bytes: 4 * MIB,
            layout: Layout::Split { below_4g: 2 * MIB },
            ..MemoryConfig::default()
        },
    )
    .unwrap();
    mem.write_physical(HIGH_RAM_BASE + 0x10, b"high").unwrap();
    mem.write_physical(0x10_0010, b"low").unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[(2 * MIB) as usize + 0x10..][..4], b"high");
    assert_eq!(&bytes[0x10_0010..][..3], b"low");
    // The hole between the low part and 4 GiB, and past the high part.
    assert!(mem.write_physical(2 * MIB, b"x").is_err());
    assert!(mem.write_physical(2 * MIB - 1, b"xy").is_err());
    assert!(mem
        .write_physical(HIGH_RAM_BASE + 2 * MIB - 1, b"xy")
        .is_err());
    // A high page's mapping is that page.
    let mdl = mem
        .allocate_contiguous(HIGH_RAM_BASE, u64::MAX, PAGE_SIZE)
        .unwrap();
    let page = mem.page_address(mdl, 0).unwrap();
    assert_eq!(page, HIGH_RAM_BASE, "the lowest high run");
    let base = mem.map(mdl).unwrap();
    // SAFETY: one mapped page, ours until unmapped.
    let view = unsafe { std::slice::from_raw_parts(base, PAGE_SIZE) };
    assert_eq!(&view[..4], b"\0\0\0\0");
    assert_eq!(&view[0x10..0x14], b"high");
    mem.unmap(base, mdl);
    mem.free(mdl);
    assert!(mem.violations().is_empty());
    drop(mem);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn allocations_stay_in_their_range_page_by_page_and_come_up_short_outside_it() {
    // MmAllocatePagesForMdlEx's rule: every page wholly in [low, high];
    // what the range cannot supply is missing (fewer pages, or none).
    let mem = split_memory(Fragmentation::Shuffled(4));
    let below_4g = u64::from(u32::MAX);
    let low_pages = 3 * MIB / PAGE;
    let mdl = mem.allocate_pages(below_4g, 2048 * PAGE_SIZE).unwrap();
    let pages = mem.page_addresses(mdl).unwrap();
    assert_eq!(pages.len() as u64, low_pages, "all of low RAM, no more");
    assert!(all_within(&pages, 0, below_4g));
    assert!(mem.allocate_pages(below_4g, PAGE_SIZE).is_none());
    // The high pages are still there for a request without a limit.
    let any = mem.allocate_pages(u64::MAX, 4 * PAGE_SIZE).unwrap();
    assert!(all_within(
        &mem.page_addresses(any).unwrap(),
        HIGH_RAM_BASE,
        u64::MAX
    ));
    assert!(mem.allocate_contiguous(0, below_4g, PAGE_SIZE).is_none());
    mem.free(mdl);
    mem.free(any);
    // A limit inside a page excludes that page.
    let limit = MIB + PAGE + 100;
    let fresh = split_memory(Fragmentation::Contiguous);
    let one = fresh.allocate_pages(limit, 8 * PAGE_SIZE).unwrap();
    assert_eq!(fresh.page_addresses(one).unwrap(), vec![MIB]);
    assert!(
        fresh.allocate_pages(MIB - 1, PAGE_SIZE).is_none(),
        "only reserved pages there"
    );
    // Contiguous: inside [low, high] or nothing.
    let high = fresh
        .allocate_contiguous(HIGH_RAM_BASE + PAGE, u64::MAX, 4 * PAGE_SIZE)
        .unwrap();
    let run = fresh.page_addresses(high).unwrap();
    assert_eq!(run[0], HIGH_RAM_BASE + PAGE);
    assert!(run.windows(2).all(|w| w[1] == w[0] + PAGE));
    assert!(
        fresh
            .allocate_contiguous(0, below_4g, 4 * MIB as usize)
            .is_none(),
        "more than low RAM holds"
    );
    assert!(
        fresh
            .allocate_contiguous(HIGH_RAM_BASE, MIB, PAGE_SIZE)
            .is_none(),
        "low above high"
    );
    let low = fresh
        .allocate_contiguous(2 * MIB, below_4g, PAGE_SIZE)
        .unwrap();
    assert_eq!(fresh.page_addresses(low).unwrap(), vec![2 * MIB]);
}

#[test]
fn dma_is_allowed_only_into_held_pages_within_the_device_reach() {
    let mem = split_memory(Fragmentation::Contiguous);
    let reach = u64::from(u32::MAX);
    let low = mem.allocate_contiguous(0, reach, 2 * PAGE_SIZE).unwrap();
    let low_page = mem.page_address(low, 0).unwrap();
    assert_eq!(mem.check_dma(low_page + 8, 2 * PAGE - 16, reach), Ok(()));
    assert_eq!(mem.check_dma(low_page, 0, reach), Ok(()));
    // One byte past the MDL: a page nobody holds.
    let past = mem.check_dma(low_page + PAGE, PAGE + 1, reach).unwrap_err();
    assert!(past.contains("held by no MDL"), "{past}");
    // A page above 4 GiB, programmed as its low 32 bits.
    let high = mem
        .allocate_contiguous(HIGH_RAM_BASE, u64::MAX, PAGE_SIZE)
        .unwrap();
    let high_page = mem.page_address(high, 0).unwrap();
    let cut = mem.check_dma(high_page & reach, 64, reach).unwrap_err();
    assert!(
        cut.contains(&format!("{high_page:#x} cut to the device's address bits")),
        "{cut}"
    );
    // A device with 64-bit registers but a 32-bit reach (a DMA mask).
    let above = mem.check_dma(high_page, 64, reach).unwrap_err();
    assert!(above.contains("above the device's reach"), "{above}");
    assert_eq!(mem.check_dma(high_page, 64, u64::MAX), Ok(()));
    // Freed: nothing is held there any more.
    mem.free(high);
    let freed = mem.check_dma(high_page & reach, 64, reach).unwrap_err();
    assert!(freed.contains("held by no MDL"), "{freed}");
    assert!(mem.check_dma(u64::MAX, 2, reach).is_err());
    mem.free(low);
}

fn machine() -> Arc<Machine> {
    Machine::new(memory(Fragmentation::Shuffled(5)), ClockMode::Virtual)
}

/// Calls a raw slot.
macro_rules! call {
    ($f:expr $(, $a:expr)* $(,)?) => {{
        let f = $f;
        // SAFETY: the test's objects are live and each argument is valid for the slot.
        unsafe { f($($a),*) }
    }};
}

#[test]
fn port_stream_refcount_query_interface_and_the_hidden_return_pointer() {
    let machine = machine();
    let stream = PortStream::new(&machine);
    let iface = stream.interface();
    let vt = iface.vtbl();
    let this = iface.this();
    assert_eq!(call!(vt.base__.AddRef, this), 2);
    assert_eq!(call!(vt.base__.Release, this), 1);
    let mut out: PVOID = ptr::dangling_mut();
    assert_eq!(
        call!(
            vt.base__.QueryInterface,
            this,
            &IID_IPortWaveRTStream,
            &raw mut out
        ),
        STATUS_SUCCESS
    );
    assert_eq!(out, this);
    assert_eq!(call!(vt.base__.Release, this), 1);
    assert_eq!(
        call!(vt.base__.QueryInterface, this, &IID_IPort, &raw mut out),
        STATUS_NOINTERFACE
    );
    assert!(out.is_null());

    let mdl = call!(
        vt.AllocatePagesForMdl,
        this,
        PHYSICAL_ADDRESS { QuadPart: i64::MAX },
        3 * PAGE_SIZE
    );
    assert!(!mdl.is_null());
    assert_eq!(call!(vt.GetPhysicalPagesCount, this, mdl), 3);
    for index in 0..3 {
        let mut result = PHYSICAL_ADDRESS { QuadPart: -1 };
        let returned = call!(vt.GetPhysicalPageAddress, this, &raw mut result, mdl, index);
        assert_eq!(
            returned, &raw mut result,
            "the result slot must come back in RAX"
        );
        let expected = machine
            .memory
            .page_address(mdl.addr(), index as usize)
            .unwrap();
        assert_eq!(result.QuadPart, i64::try_from(expected).unwrap());
    }
    let base = call!(vt.MapAllocatedPages, this, mdl, MmCached);
    assert!(!base.is_null());
    assert_eq!((stream.live_mdls(), stream.live_mappings()), (1, 1));
    call!(vt.UnmapAllocatedPages, this, base, mdl);
    call!(vt.FreePagesFromMdl, this, mdl);
    assert_eq!(
        (
            stream.live_mdls(),
            stream.live_mappings(),
            machine.memory.pages_in_use()
        ),
        (0, 0, 0)
    );
    drop(stream);
    assert_eq!(machine.live_objects(), 0);
    assert!(machine.violations().is_empty());
}

#[test]
fn port_stream_calls_above_passive_level_are_reported() {
    let machine = machine();
    let stream = PortStream::new(&machine);
    let iface = stream.interface();
    let vt = iface.vtbl();
    let this = iface.this();
    // A driver that allocates its buffer under its spin lock.
    let (mdl, _) = irql::run_at(irql::DISPATCH_LEVEL, || {
        call!(
            vt.AllocatePagesForMdl,
            this,
            PHYSICAL_ADDRESS { QuadPart: -1 },
            PAGE_SIZE
        )
    });
    assert!(!mdl.is_null(), "the stand-in still does what it is asked");
    let ((), _) = irql::run_at(irql::DEVICE_IRQL, || call!(vt.FreePagesFromMdl, this, mdl));
    let violations = machine.violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations[0].contains(
        "IPortWaveRTStream::AllocatePagesForMdl called at DISPATCH_LEVEL (PASSIVE_LEVEL only)"
    ));
    assert!(violations[1].contains("IPortWaveRTStream::FreePagesFromMdl called at DIRQL 5"));
    // At PASSIVE_LEVEL: nothing.
    let mdl = call!(
        vt.AllocatePagesForMdl,
        this,
        PHYSICAL_ADDRESS { QuadPart: -1 },
        PAGE_SIZE
    );
    call!(vt.FreePagesFromMdl, this, mdl);
    assert_eq!(machine.violations().len(), 2);
}

#[test]
fn the_host_platforms_kernel_calls_above_dispatch_level_are_reported() {
    let machine = machine();
    let adapter = start_cable_adapter(&machine, CableOptions::default()).unwrap();
    let platform = adapter.cable().unwrap().platform();
    let event = machine.new_event();
    // SAFETY: an event the machine made, alive for the whole test.
    let kernel_event = unsafe { KernelEvent::from_raw(event.as_pkevent()) }.unwrap();
    // At DISPATCH_LEVEL (under the cable lock, in the timer callback): allowed.
    let ((), _) = irql::run_at(irql::DISPATCH_LEVEL, || {
        platform.signal_event(kernel_event);
        platform.set_timer(10_000);
        platform.stop_timer();
    });
    assert!(
        machine.violations().is_empty(),
        "{:?}",
        machine.violations()
    );
    // From an ISR: each one is reported.
    let ((), _) = irql::run_at(irql::DEVICE_IRQL, || {
        platform.signal_event(kernel_event);
        platform.set_timer(10_000);
        platform.stop_timer();
    });
    let violations = machine.violations();
    assert_eq!(violations.len(), 3, "{violations:?}");
    for (found, routine) in violations
        .iter()
        .zip(["KeSetEvent", "ExSetTimer", "ExCancelTimer"])
    {
        assert!(
            found.contains(&format!(
                "{routine} called at DIRQL 5 (allowed up to DISPATCH_LEVEL)"
            )),
            "{found}"
        );
    }
    assert_eq!(event.signals(), 2, "the stand-in still signals");
    adapter.remove();
}

#[test]
fn ports_answer_their_interfaces_and_refuse_init_without_a_miniport() {
    let machine = machine();
    let list = PortList::default();
    let wave = Port::new(&machine, PortKind::WaveRt, &list);
    let topology = Port::new(&machine, PortKind::Topology, &list);
    assert!(wave.interface().query::<IPortWaveRT>().is_ok());
    assert!(wave.interface().query::<IPortTopology>().is_err());
    assert!(topology.interface().query::<IPortTopology>().is_ok());
    // Both ports unregister subdevices; only the topology port (the one
    // Learn lists, and the one SYSVAD asks) unregisters connections.
    assert!(wave.interface().query::<IUnregisterSubdevice>().is_ok());
    assert!(topology.interface().query::<IUnregisterSubdevice>().is_ok());
    assert!(topology
        .interface()
        .query::<IUnregisterPhysicalConnection>()
        .is_ok());
    assert!(wave
        .interface()
        .query::<IUnregisterPhysicalConnection>()
        .is_err());
    // Each interface answers for the others of its object (COM identity).
    let unregister = topology
        .interface()
        .query::<IUnregisterSubdevice>()
        .unwrap();
    assert_eq!(
        unregister.query::<IPort>().unwrap().as_raw(),
        topology.interface().as_raw()
    );
    drop(unregister);
    let init = wave.interface().vtbl().Init;
    let status = call!(
        init,
        wave.interface().this(),
        ptr::null_mut(),
        ptr::null_mut(),
        ptr::null_mut(),
        ptr::null_mut(),
        ptr::null_mut()
    );
    assert_eq!(status, STATUS_INVALID_PARAMETER);
    drop((wave, topology));
    assert_eq!(machine.live_objects(), 0);
}

static ISR_CALLS: AtomicU32 = AtomicU32::new(0);

#[windows_abi]
unsafe extern "system" fn isr(_sync: *mut IInterruptSync, context: PVOID) -> NTSTATUS {
    ISR_CALLS.fetch_add(1, Ordering::SeqCst);
    if context.is_null() {
        STATUS_UNSUCCESSFUL
    } else {
        STATUS_SUCCESS
    }
}

#[test]
fn interrupt_sync_runs_registered_isrs_when_the_device_interrupts() {
    let machine = machine();
    let line = InterruptLine::new(&machine);
    let vt = line.interface().vtbl();
    let this = line.interface().this();
    assert!(!line.raise(), "not connected yet");
    assert_eq!(
        call!(vt.Connect, this),
        STATUS_INVALID_DEVICE_REQUEST,
        "no ISR registered"
    );
    let mut context = 1u8;
    let ctx: PVOID = (&raw mut context).cast::<c_void>();
    assert_eq!(
        call!(vt.RegisterServiceRoutine, this, Some(isr), ctx, 0),
        STATUS_SUCCESS
    );
    assert_eq!(call!(vt.Connect, this), STATUS_SUCCESS);
    let before = ISR_CALLS.load(Ordering::SeqCst);
    assert!(line.raise());
    assert_eq!(
        call!(vt.CallSynchronizedRoutine, this, Some(isr), ctx),
        STATUS_SUCCESS
    );
    assert_eq!(ISR_CALLS.load(Ordering::SeqCst), before + 2);
    call!(vt.Disconnect, this);
    assert!(!line.raise());
    assert_eq!(line.delivered(), 1);
}

#[test]
fn resource_list_finds_entries_by_type() {
    let machine = machine();
    let list: ComPtr<IResourceList> = new_resource_list(
        &machine,
        &[
            ResourceDescriptor::port(0xC000, 256),
            ResourceDescriptor::interrupt(10, 10, 1),
            ResourceDescriptor::port(0xC100, 64),
        ],
    );
    let vt = list.vtbl();
    assert_eq!(call!(vt.NumberOfEntries, list.this()), 3);
    assert_eq!(
        call!(vt.NumberOfEntriesOfType, list.this(), CmResourceTypePort),
        2
    );
    let second_port = call!(vt.FindTranslatedEntry, list.this(), CmResourceTypePort, 1);
    assert!(!second_port.is_null());
    // SAFETY: a descriptor owned by the live list.
    let port = unsafe { second_port.read() };
    assert_eq!(i32::from(port.Type), CmResourceTypePort);
    assert_eq!(
        i32::from(port.ShareDisposition),
        CmResourceShareDeviceExclusive
    );
    assert_eq!({ port.Flags }, CM_RESOURCE_PORT_IO);
    // SAFETY: a port descriptor: `u.Port` is its member.
    let range = unsafe { port.u.Port };
    assert_eq!({ range.Start.QuadPart }, 0xC100);
    assert_eq!({ range.Length }, 64);
    let interrupt = call!(
        vt.FindTranslatedEntry,
        list.this(),
        CmResourceTypeInterrupt,
        0
    );
    assert!(!interrupt.is_null());
    // SAFETY: a descriptor owned by the live list.
    let interrupt = unsafe { interrupt.read() };
    assert_eq!(i32::from(interrupt.Type), CmResourceTypeInterrupt);
    // SAFETY: an interrupt descriptor: `u.Interrupt` is its member.
    let line = unsafe { interrupt.u.Interrupt };
    assert_eq!(
        ({ line.Level }, { line.Vector }, { line.Affinity }),
        (10, 10, 1)
    );
    assert!(call!(vt.FindTranslatedEntry, list.this(), CmResourceTypeDma, 0).is_null());
}

/// The emulator writes the descriptors and the miniport's AC'97 reader
/// parses them, both through `portcls-sys`' `CM_PARTIAL_RESOURCE_DESCRIPTOR`
/// (whose layout the ABI check holds to MinGW-w64's `wdm.h`).
#[test]
fn the_miniport_reads_the_emulators_resource_descriptors() {
    let machine = machine();
    let ac97 = new_resource_list(
        &machine,
        &[
            ResourceDescriptor::port(0xD000, 1024),
            ResourceDescriptor::port(0xD400, 256),
            ResourceDescriptor::interrupt(11, 11, 1),
        ],
    );
    assert_eq!(DeviceKind::of(Some(&ac97)), DeviceKind::Ac97);
    assert_eq!(
        Ac97Resources::from_list(&ac97),
        Ok(Ac97Resources {
            mixer_port: 0xD000,
            bus_master_port: 0xD400,
        })
    );

    let refused = |entries: &[ResourceDescriptor]| {
        Ac97Resources::from_list(&new_resource_list(&machine, entries))
            .map_err(wavert_com::NtStatus::code)
    };
    let bad = Err(STATUS_DEVICE_CONFIGURATION_ERROR);
    // Bus-master window shorter than GLOB_STA needs.
    assert_eq!(
        refused(&[
            ResourceDescriptor::port(0xD000, 1024),
            ResourceDescriptor::port(0xD400, 0x33),
            ResourceDescriptor::interrupt(11, 11, 1),
        ]),
        bad
    );
    // A window that runs past 64 KiB of port space.
    assert_eq!(
        refused(&[
            ResourceDescriptor::port(0xFF80, 0x100),
            ResourceDescriptor::port(0xD400, 256),
            ResourceDescriptor::interrupt(11, 11, 1),
        ]),
        bad
    );
    // No interrupt.
    assert_eq!(
        refused(&[
            ResourceDescriptor::port(0xD000, 1024),
            ResourceDescriptor::port(0xD400, 256),
        ]),
        bad
    );
    assert_eq!(
        DeviceKind::of(Some(&new_resource_list(&machine, &[]))),
        DeviceKind::VirtualCable
    );
}

/// Two registered topology subdevices connected pin 1 -> pin 0, through
/// the emulated PortCls, and the unregister interfaces of the first.
fn two_connected_subdevices(
    machine: &Arc<Machine>,
) -> (
    wavert_emulator::cable::EmuPortCls,
    ComPtr<IPort>,
    ComPtr<IPort>,
) {
    use wavert_miniport::adapter::PortClsServices;
    let services = wavert_emulator::cable::EmuPortCls::new(Arc::clone(machine), None);
    let mut ports = Vec::new();
    for name in [&A_NAME[..], &B_NAME[..]] {
        let miniport = wavert_com::new_topology_miniport(wavert_miniport::TopologyMiniport::new(
            wavert_miniport::Direction::Render,
            wavert_miniport::cable::endpoints::RENDER,
        ))
        .unwrap();
        let port = services.new_port(&CLSID_PortTopology).unwrap();
        services
            .init_port(&port, &miniport.query::<IUnknown>().unwrap())
            .unwrap();
        services.register_subdevice(name, &port).unwrap();
        ports.push(port);
    }
    let b = ports.pop().unwrap();
    let a = ports.pop().unwrap();
    services.register_physical_connection(&a, 1, &b, 0).unwrap();
    (services, a, b)
}

static A_NAME: [u16; 2] = [b'A' as u16, 0];
static B_NAME: [u16; 2] = [b'B' as u16, 0];

#[test]
fn unregistering_out_of_order_or_after_the_stop_is_a_violation() {
    // In order, before PortCls's stop: clean, nothing left.
    let machine = self::machine();
    let (services, a, b) = two_connected_subdevices(&machine);
    let connection = a.query::<IUnregisterPhysicalConnection>().unwrap();
    let status = call!(
        connection.vtbl().UnregisterPhysicalConnection,
        connection.this(),
        ptr::null_mut(),
        a.as_raw().cast(),
        1,
        b.as_raw().cast(),
        0
    );
    assert_eq!(status, STATUS_SUCCESS);
    // The same connection again: not registered any more.
    let again = call!(
        connection.vtbl().UnregisterPhysicalConnection,
        connection.this(),
        ptr::null_mut(),
        a.as_raw().cast(),
        1,
        b.as_raw().cast(),
        0
    );
    assert_eq!(again, STATUS_NOT_FOUND);
    for port in [&a, &b] {
        let unregister = port.query::<IUnregisterSubdevice>().unwrap();
        let status = call!(
            unregister.vtbl().UnregisterSubdevice,
            unregister.this(),
            ptr::null_mut(),
            port.as_raw().cast()
        );
        assert_eq!(status, STATUS_SUCCESS);
    }
    let r = machine.registrations();
    assert!(r.subdevices.is_empty() && r.connections.is_empty(), "{r:?}");
    assert_eq!(services.port_count(), 0, "PortCls let go of both ports");
    assert!(
        machine.violations().is_empty(),
        "{:?}",
        machine.violations()
    );
    drop((connection, a, b, services));
    assert_eq!(machine.live_objects(), 0);

    // A subdevice unregistered while its connection is registered: a
    // violation, and the connection stays recorded (the leak shows).
    let machine = self::machine();
    let (services, a, b) = two_connected_subdevices(&machine);
    let unregister = a.query::<IUnregisterSubdevice>().unwrap();
    let status = call!(
        unregister.vtbl().UnregisterSubdevice,
        unregister.this(),
        ptr::null_mut(),
        a.as_raw().cast()
    );
    assert_eq!(status, STATUS_SUCCESS);
    assert!(
        machine
            .violations()
            .iter()
            .any(|v| v.contains("UnregisterSubdevice(A) while its physical connections")),
        "{:?}",
        machine.violations()
    );
    assert_eq!(machine.registrations().connections.len(), 1);
    drop(unregister);
    services.release_all();
    drop((a, b, services));

    // Unregistering after PortCls handled the stop: a violation.
    let machine = self::machine();
    let (services, _a, b) = two_connected_subdevices(&machine);
    machine.set_device_stopped(true);
    let unregister = b.query::<IUnregisterSubdevice>().unwrap();
    let _ = call!(
        unregister.vtbl().UnregisterSubdevice,
        unregister.this(),
        ptr::null_mut(),
        b.as_raw().cast()
    );
    assert!(
        machine
            .violations()
            .iter()
            .any(|v| v.contains("after PortCls handled the stop")),
        "{:?}",
        machine.violations()
    );
    drop(unregister);
    services.release_all();
}

#[test]
fn a_full_subdevice_table_refuses_the_next_registration() {
    use wavert_miniport::adapter::PortClsServices;
    let machine = self::machine();
    let services = wavert_emulator::cable::EmuPortCls::new(Arc::clone(&machine), None);
    services.set_max_subdevices(1);
    let mut results = Vec::new();
    let mut kept = Vec::new();
    for name in [&A_NAME[..], &B_NAME[..]] {
        let miniport = wavert_com::new_topology_miniport(wavert_miniport::TopologyMiniport::new(
            wavert_miniport::Direction::Render,
            wavert_miniport::cable::endpoints::RENDER,
        ))
        .unwrap();
        let port = services.new_port(&CLSID_PortTopology).unwrap();
        services
            .init_port(&port, &miniport.query::<IUnknown>().unwrap())
            .unwrap();
        results.push(
            services
                .register_subdevice(name, &port)
                .map_err(wavert_com::NtStatus::code),
        );
        kept.push(port);
    }
    assert_eq!(results, [Ok(()), Err(STATUS_ALLOTTED_SPACE_EXCEEDED)]);
    assert_eq!(machine.violations().len(), 1, "{:?}", machine.violations());
    drop(kept);
    services.release_all();
}

#[test]
fn port_stream_honours_high_address_through_the_vtable() {
    let machine = Machine::new(split_memory(Fragmentation::Shuffled(8)), ClockMode::Virtual);
    let stream = PortStream::new(&machine);
    let iface = stream.interface();
    let vt = iface.vtbl();
    let this = iface.this();
    let pages_of = |mdl: PMDL| {
        let count = call!(vt.GetPhysicalPagesCount, this, mdl);
        (0..count)
            .map(|index| {
                let mut result = PHYSICAL_ADDRESS::default();
                call!(vt.GetPhysicalPageAddress, this, &raw mut result, mdl, index);
                u64::try_from(result.QuadPart).unwrap()
            })
            .collect::<Vec<u64>>()
    };
    let limited = call!(
        vt.AllocatePagesForMdl,
        this,
        PHYSICAL_ADDRESS {
            QuadPart: 0xFFFF_FFFF
        },
        32 * PAGE_SIZE
    );
    let pages = pages_of(limited);
    assert_eq!(pages.len(), 32);
    assert!(all_within(&pages, 0, 0xFFFF_FFFF), "{pages:x?}");
    // -1: any page; with half of RAM high, 32 shuffled pages have some.
    let any = call!(
        vt.AllocatePagesForMdl,
        this,
        PHYSICAL_ADDRESS { QuadPart: -1 },
        32 * PAGE_SIZE
    );
    assert!(pages_of(any).iter().any(|&p| p >= HIGH_RAM_BASE));
    let list = call!(
        vt.AllocateContiguousPagesForMdl,
        this,
        PHYSICAL_ADDRESS {
            QuadPart: i64::try_from(HIGH_RAM_BASE).unwrap()
        },
        PHYSICAL_ADDRESS { QuadPart: -1 },
        PAGE_SIZE
    );
    assert!(pages_of(list)[0] >= HIGH_RAM_BASE);
    for mdl in [limited, any, list] {
        call!(vt.FreePagesFromMdl, this, mdl);
    }
    assert_eq!(machine.memory.pages_in_use(), 0);
    assert!(machine.violations().is_empty());
}
