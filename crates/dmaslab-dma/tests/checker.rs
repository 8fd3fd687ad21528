//! Checker findings (a) to (f), each provoked and reported with the right parties.

use dmaslab_core::{Gfp, Policy};
use dmaslab_dma::{
    Device, Direction, DmaAddr, DmaError, Finding, FindingKind, Machine, MachineConfig, Role,
};

const DEV: Device = Device::non_coherent(64);

fn machine(policy: Policy) -> Machine {
    Machine::new(MachineConfig::new(policy)).unwrap()
}

fn only(m: &mut Machine, kind: FindingKind) -> Vec<Finding> {
    m.take_findings()
        .into_iter()
        .filter(|f| f.kind == kind)
        .collect()
}

#[test]
fn a_mapping_sharing_a_line_with_a_live_object() {
    let mut m = machine(Policy::B);
    let buf = m.kmalloc(4, Gfp::KERNEL).unwrap();
    let nb = m.kmalloc(4, Gfp::KERNEL).unwrap();
    assert_eq!(buf & !63, nb & !63, "two kmalloc-8 objects share a line");
    let d = m.map_single(&DEV, buf, 4, Direction::FromDevice).unwrap();
    let f = only(&mut m, FindingKind::SharedCacheLine);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].subject.addr, f[0].subject.size), (buf, 4));
    assert_eq!(f[0].subject.role, Role::Mapping(Direction::FromDevice));
    let o = f[0].other.unwrap();
    assert_eq!(
        (o.addr, o.size, o.role),
        (nb, 8, Role::Object { live: true })
    );
    assert_eq!(f[0].line, buf & !63);
    assert!(
        f[0].site.file().ends_with("checker.rs"),
        "call site: {}",
        f[0].site
    );
    // An object allocated into the line while the device owns it is named too.
    let late = m.kmalloc(4, Gfp::KERNEL).unwrap();
    let f = only(&mut m, FindingKind::SharedCacheLine);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].other.unwrap().addr, late);
    m.unmap_single(&DEV, d, 4, Direction::FromDevice).unwrap();
    // ToDevice sharing is harmless and not reported.
    let d = m.map_single(&DEV, buf, 4, Direction::ToDevice).unwrap();
    assert!(m.take_findings().is_empty());
    m.unmap_single(&DEV, d, 4, Direction::ToDevice).unwrap();
}

#[test]
fn b_two_active_mappings_in_one_line() {
    let mut m = machine(Policy::B);
    let x = m.kmalloc(8, Gfp::KERNEL).unwrap();
    let y = m.kmalloc(8, Gfp::KERNEL).unwrap();
    let dx = m.map_single(&DEV, x, 8, Direction::FromDevice).unwrap();
    let dy = m.map_single(&DEV, y, 8, Direction::Bidirectional).unwrap();
    let f = only(&mut m, FindingKind::OverlappingMappings);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].subject.addr, y);
    assert_eq!(f[0].subject.role, Role::Mapping(Direction::Bidirectional));
    let o = f[0].other.unwrap();
    assert_eq!(
        (o.addr, o.size, o.role),
        (x, 8, Role::Mapping(Direction::FromDevice))
    );
    assert_eq!(f[0].line, x & !63);
    m.unmap_single(&DEV, dy, 8, Direction::Bidirectional)
        .unwrap();
    m.unmap_single(&DEV, dx, 8, Direction::FromDevice).unwrap();
}

#[test]
fn c_cpu_access_before_sync_for_cpu() {
    let mut m = machine(Policy::A);
    let buf = m.kmalloc(64, Gfp::KERNEL).unwrap();
    let d = m.map_single(&DEV, buf, 64, Direction::FromDevice).unwrap();
    let mut b = [0u8; 4];
    m.cpu_read(buf + 8, &mut b).unwrap();
    let f = only(&mut m, FindingKind::CpuAccessWhileMapped);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].subject.role, Role::CpuAccess { write: false });
    assert_eq!((f[0].subject.addr, f[0].subject.size), (buf + 8, 4));
    assert_eq!(f[0].other.unwrap().addr, buf);
    // After sync_for_cpu the CPU may look; after sync_for_device it may not again.
    m.sync_single_for_cpu(&DEV, d, 64, Direction::FromDevice)
        .unwrap();
    m.cpu_read(buf, &mut b).unwrap();
    assert!(m.take_findings().is_empty());
    m.sync_single_for_device(&DEV, d, 64, Direction::FromDevice)
        .unwrap();
    m.cpu_write(buf, &[1]).unwrap();
    let f = only(&mut m, FindingKind::CpuAccessWhileMapped);
    assert_eq!(f[0].subject.role, Role::CpuAccess { write: true });
    m.unmap_single(&DEV, d, 64, Direction::FromDevice).unwrap();
    // ToDevice: reading is fine.
    let d = m.map_single(&DEV, buf, 64, Direction::ToDevice).unwrap();
    m.cpu_read(buf, &mut b).unwrap();
    assert!(m.take_findings().is_empty());
    m.unmap_single(&DEV, d, 64, Direction::ToDevice).unwrap();
}

#[test]
fn d_unmap_or_sync_with_wrong_size_or_direction() {
    let mut m = machine(Policy::A);
    let buf = m.kmalloc(128, Gfp::KERNEL).unwrap();
    let d = m.map_single(&DEV, buf, 100, Direction::ToDevice).unwrap();
    let e = m
        .unmap_single(&DEV, d, 64, Direction::ToDevice)
        .unwrap_err();
    assert_eq!(
        e,
        DmaError::Mismatch {
            dma: d,
            mapped_len: 100,
            mapped_dir: Direction::ToDevice
        }
    );
    let f = only(&mut m, FindingKind::WrongSizeOrDirection);
    assert_eq!(f[0].subject.role, Role::Call(Direction::ToDevice));
    assert_eq!((f[0].subject.addr, f[0].subject.size), (buf, 64));
    let o = f[0].other.unwrap();
    assert_eq!(
        (o.addr, o.size, o.role),
        (buf, 100, Role::Mapping(Direction::ToDevice))
    );
    assert!(m
        .sync_single_for_cpu(&DEV, d, 100, Direction::FromDevice)
        .is_err());
    let f = only(&mut m, FindingKind::WrongSizeOrDirection);
    assert_eq!(f[0].subject.role, Role::Call(Direction::FromDevice));
    // The mapping survived the bad calls.
    m.unmap_single(&DEV, d, 100, Direction::ToDevice).unwrap();
    assert!(m.take_findings().is_empty());
}

#[test]
fn e_double_unmap_and_unmap_of_never_mapped() {
    let mut m = machine(Policy::A);
    let buf = m.kmalloc(64, Gfp::KERNEL).unwrap();
    let d = m.map_single(&DEV, buf, 64, Direction::FromDevice).unwrap();
    m.unmap_single(&DEV, d, 64, Direction::FromDevice).unwrap();
    assert_eq!(
        m.unmap_single(&DEV, d, 64, Direction::FromDevice),
        Err(DmaError::DoubleUnmap(d))
    );
    let f = only(&mut m, FindingKind::DoubleUnmap);
    assert_eq!(f[0].subject.addr, buf);
    assert_eq!(
        f[0].other.unwrap().role,
        Role::Mapping(Direction::FromDevice)
    );
    let never = DmaAddr(0x12_3440);
    assert_eq!(
        m.sync_single_for_cpu(&DEV, never, 4, Direction::ToDevice),
        Err(DmaError::NotMapped(never))
    );
    let f = only(&mut m, FindingKind::NeverMapped);
    assert_eq!(f[0].subject.addr, m.ram_base() + 0x12_3440);
    assert!(f[0].other.is_none());
}

#[test]
fn f_mapping_stack_and_wild_memory() {
    let mut m = machine(Policy::C);
    let stack = [0u8; 16];
    let a = stack.as_ptr() as usize;
    assert_eq!(
        m.map_single(&DEV, a, 16, Direction::FromDevice),
        Err(DmaError::NotDmaAble { addr: a })
    );
    let f = only(&mut m, FindingKind::NotDmaAble);
    assert_eq!((f[0].subject.addr, f[0].subject.size), (a, 16));
    assert_eq!(f[0].other.unwrap().role, Role::Foreign);
    assert_eq!(
        m.map_single(&DEV, 0x1000, 4, Direction::ToDevice),
        Err(DmaError::NotDmaAble { addr: 0x1000 })
    );
    assert_eq!(only(&mut m, FindingKind::NotDmaAble).len(), 1);
    // A freed slot is allocator memory but not a live buffer.
    let p = m.kmalloc(32, Gfp::KERNEL).unwrap();
    let _keep = m.kmalloc(32, Gfp::KERNEL).unwrap();
    m.kfree(p).unwrap();
    assert_eq!(
        m.map_single(&DEV, p, 32, Direction::ToDevice),
        Err(DmaError::NotLive { addr: p })
    );
    let f = only(&mut m, FindingKind::NotDmaAble);
    assert_eq!(f[0].other.unwrap().role, Role::Object { live: false });
    assert_eq!(m.active_mappings(), 0);
}

#[test]
#[should_panic(expected = "double-unmap")]
fn findings_can_panic_in_tests() {
    let mut m = machine(Policy::A);
    m.checker_mut().set_panic(true);
    let buf = m.kmalloc(64, Gfp::KERNEL).unwrap();
    let d = m.map_single(&DEV, buf, 64, Direction::ToDevice).unwrap();
    m.unmap_single(&DEV, d, 64, Direction::ToDevice).unwrap();
    let _ = m.unmap_single(&DEV, d, 64, Direction::ToDevice);
}
