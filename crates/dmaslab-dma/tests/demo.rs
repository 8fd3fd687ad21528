//! The seed's example: corruption only for policy B with the direct kmalloc mapping.

use dmaslab_dma::scenario::demo::{run_all, Setup, Timing, DEVICE_VALUE, STALE_VALUE};
use dmaslab_dma::FindingKind;

#[test]
fn only_b_with_direct_kmalloc_mapping_corrupts() {
    let all = run_all().expect("demo runs");
    assert_eq!(all.len(), 10);
    for o in &all {
        let bug = o.setup == Setup::BKmallocDirect;
        assert_eq!(o.corrupted, bug, "{}: {o:?}", o.name());
        let shared: Vec<_> = o
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::SharedCacheLine)
            .collect();
        assert_eq!(
            !shared.is_empty(),
            bug,
            "{}: findings {:?}",
            o.name(),
            o.findings
        );
        assert_eq!(
            o.findings.len(),
            shared.len(),
            "{}: only kind (a)",
            o.name()
        );
        assert_eq!(o.bounced, o.setup == Setup::C, "{}", o.name());
        if !bug {
            assert_eq!(o.value_read, DEVICE_VALUE, "{}", o.name());
            assert!(o.neighbour_intact, "{}", o.name());
        }
    }
}

#[test]
fn both_corruption_directions_are_shown() {
    let all = run_all().unwrap();
    let b = |t| {
        all.iter()
            .find(|o| o.setup == Setup::BKmallocDirect && o.timing == t)
            .unwrap()
    };
    let wb = b(Timing::StaleWriteback);
    assert_eq!(
        wb.value_read, STALE_VALUE,
        "the stale line overwrote the device's data"
    );
    assert!(wb.neighbour_intact);
    let inv = b(Timing::LostNeighbourWrite);
    assert_eq!(inv.value_read, DEVICE_VALUE);
    assert!(
        !inv.neighbour_intact,
        "the invalidate discarded the neighbour's write"
    );
    // The finding names both parties: the 4-byte mapping and the 8-byte neighbour slot, in one line.
    let f = &wb.findings[0];
    assert_eq!(f.subject.size, 4);
    let other = f.other.expect("a neighbour");
    assert_eq!(other.size, 8);
    assert_eq!(f.subject.line, other.line);
    assert_eq!(f.line, other.line);
}
