//! Randomized interleavings of map / device write / CPU neighbour write / allocation / free /
//! eviction / unmap over random object sizes, checked against shadow copies of every object.
//!
//! - Policies A and C (exact bouncing): no corruption ever, and exact bouncing has zero false
//!   positives and zero false negatives against the ground truth below.
//! - Linux's size rule is measured on the same traces (its FP / FN), and run for real under C to
//!   count the corruptions its false negatives cause.
//! - Policy B with drivers mapping kmalloc buffers directly corrupts: the test can fail.
//!
//! Ground truth, computed here independently of the crate's rule: a mapping needs a bounce iff
//! the device writes it and a byte of its first or last cache line outside the range belongs to
//! another slot (live or free), another large run or allocator metadata, as the allocator's
//! `owner_of` says. Probed every 8 bytes, plus the first byte after the range: every allocation
//! and slab boundary is a multiple of 8.

use dmaslab_core::{Gfp, Owner, Policy};
use dmaslab_dma::{BounceRule, Device, Direction, FromDeviceMap, Machine, MachineConfig};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

struct Obj {
    addr: usize,
    shadow: Vec<u8>,
}

#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    scenarios: u64,
    needs: u64,
    exact_fp: u64,
    exact_fn: u64,
    linux_fp: u64,
    linux_fn: u64,
    corrupted: u64,
    bounces: u64,
}

fn truth(m: &Machine, addr: usize, len: usize, line: usize, dir: Direction) -> bool {
    if dir == Direction::ToDevice {
        return false;
    }
    let own = match m.owner_of(addr) {
        Owner::Object { start, .. } | Owner::Large { start, .. } => start,
        o => panic!("mapped a non-allocation {o:?}"),
    };
    let first = addr & !(line - 1);
    let end = addr + len;
    let last_end = ((end - 1) & !(line - 1)) + line;
    let probes = (first..addr)
        .step_by(8)
        .chain(std::iter::once(end).filter(|&e| e < last_end))
        .chain(((end & !7) + 8..last_end).step_by(8));
    probes.into_iter().any(|b| match m.owner_of(b) {
        Owner::Object { start, .. } | Owner::Large { start, .. } => start != own,
        Owner::Metadata { .. } => true,
        Owner::Unused | Owner::Foreign => false,
    })
}

fn random_size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=49 => 1 + r.below(32),
        50..=79 => 33 + r.below(96),
        80..=97 => 129 + r.below(500),
        _ => 4000 + r.below(16000),
    }
}

fn alloc(m: &mut Machine, r: &mut Rng, live: &mut Vec<Obj>) {
    let size = random_size(r);
    let gfp = if r.chance(15) { Gfp::DMA } else { Gfp::KERNEL };
    let addr = m.kmalloc(size, gfp).expect("RAM is large enough");
    let shadow = r.bytes(size);
    m.cpu_write(addr, &shadow).unwrap();
    live.push(Obj { addr, shadow });
}

/// Runs `n` scenarios; returns the tally. `check_model` asserts no corruption.
fn run(policy: Policy, rule: BounceRule, fdm: FromDeviceMap, seed: u64, n: usize) -> Tally {
    let line = 64;
    let mut m = Machine::new(
        MachineConfig::new(policy)
            .line(line)
            .rule(rule)
            .from_device_map(fdm)
            .cache(4096, 4)
            .seed(seed),
    )
    .unwrap();
    let dev = Device::non_coherent(line);
    let mut r = Rng(seed);
    let mut live: Vec<Obj> = Vec::new();
    let mut t = Tally::default();
    for _ in 0..n {
        // Churn: a few allocations and frees leave live objects and free slots side by side.
        for _ in 0..1 + r.below(3) {
            alloc(&mut m, &mut r, &mut live);
        }
        while live.len() > 40 || (live.len() > 4 && r.chance(30)) {
            let o = live.swap_remove(r.below(live.len()));
            m.kfree(o.addr).unwrap();
        }
        // The buffer: a whole object or a piece of one.
        let mut bi = r.below(live.len());
        let (addr, req) = (live[bi].addr, live[bi].shadow.len());
        let (off, len) = if r.chance(60) {
            (0, req)
        } else {
            let off = r.below(req);
            (off, 1 + r.below(req - off))
        };
        let baddr = addr + off;
        let dir = Direction::ALL[r.below(3)];

        let need = truth(&m, baddr, len, line, dir);
        let exact = m.would_bounce(BounceRule::Exact, &dev, baddr, len, dir);
        let linux = m.would_bounce(BounceRule::LinuxSize, &dev, baddr, len, dir);
        t.scenarios += 1;
        t.needs += need as u64;
        t.exact_fp += (exact && !need) as u64;
        t.exact_fn += (!exact && need) as u64;
        t.linux_fp += (linux && !need) as u64;
        t.linux_fn += (!linux && need) as u64;

        let before = m.stats().bounces;
        let dma = m.map_single(&dev, baddr, len, dir).expect("map");
        t.bounces += m.stats().bounces - before;

        // What the buffer must hold at the end.
        let mut expect = live[bi].shadow[off..off + len].to_vec();
        let mut device_wrote = false;
        let first_line = baddr & !(line - 1);
        let last_line = (baddr + len - 1) & !(line - 1);
        let steps = 1 + r.below(8);
        let mut bad = false;
        for s in 0..steps {
            let final_step = s + 1 == steps;
            match r.below(7) {
                _ if final_step && dir == Direction::FromDevice && !device_wrote => {}
                0 | 1 if dir.device_writes() => {
                    // FromDevice: the device fills the whole buffer at least once.
                    let (o, l) = if dir == Direction::FromDevice && !device_wrote {
                        (0, len)
                    } else {
                        let o = r.below(len);
                        (o, 1 + r.below(len - o))
                    };
                    let data = r.bytes(l);
                    m.device_write(&dev, dma.offset(o), &data).unwrap();
                    expect[o..o + l].copy_from_slice(&data);
                    device_wrote = true;
                }
                0 | 1 => {
                    let mut got = vec![0; len];
                    m.device_read(&dev, dma, &mut got).unwrap();
                    bad |= got != expect;
                }
                2 | 3 => {
                    // The CPU writes a neighbour, preferably one in the buffer's first/last line.
                    let near: Vec<usize> = (0..live.len())
                        .filter(|&i| i != bi)
                        .filter(|&i| {
                            let (a, l) = (live[i].addr, live[i].shadow.len());
                            let (s, e) = (a & !(line - 1), (a + l - 1) & !(line - 1));
                            (s <= first_line && first_line <= e)
                                || (s <= last_line && last_line <= e)
                        })
                        .collect();
                    let i = if !near.is_empty() && r.chance(80) {
                        near[r.below(near.len())]
                    } else {
                        r.below(live.len())
                    };
                    if i != bi {
                        let l = live[i].shadow.len();
                        let o = r.below(l);
                        let n = 1 + r.below((l - o).min(16));
                        let data = r.bytes(n);
                        m.cpu_write(live[i].addr + o, &data).unwrap();
                        live[i].shadow[o..o + n].copy_from_slice(&data);
                    }
                }
                4 => {
                    // A new object may land in a free slot of the shared line.
                    alloc(&mut m, &mut r, &mut live);
                }
                5 => {
                    let i = r.below(live.len());
                    if i != bi && live.len() > 2 {
                        let o = live.swap_remove(i);
                        m.kfree(o.addr).unwrap();
                        if bi == live.len() {
                            // swap_remove moved the buffer's entry into slot i.
                            bi = i;
                        }
                    }
                }
                _ => {
                    if r.chance(70) {
                        m.evict(if r.chance(50) { first_line } else { last_line });
                    } else {
                        m.evict_random();
                    }
                }
            }
            if final_step && dir == Direction::FromDevice && !device_wrote {
                let data = r.bytes(len);
                m.device_write(&dev, dma, &data).unwrap();
                expect.copy_from_slice(&data);
                device_wrote = true;
            }
        }
        m.unmap_single(&dev, dma, len, dir).expect("unmap");
        assert_eq!(live[bi].addr, addr, "the buffer is tracked through frees");
        if dir.device_writes() {
            live[bi].shadow[off..off + len].copy_from_slice(&expect);
        }
        for (i, o) in live.iter_mut().enumerate() {
            let mut got = vec![0; o.shadow.len()];
            m.cpu_read(o.addr, &mut got).unwrap();
            if i == bi && fdm == FromDeviceMap::Invalidate {
                // Invalidate at map may drop dirty bytes of the buffer's own object next to a
                // sub-range: the driver's own data, not a neighbour's. Check the range only.
                bad |= got[off..off + len] != o.shadow[off..off + len];
                o.shadow = got;
            } else {
                bad |= got != o.shadow;
            }
        }
        if bad {
            // Count the scenario once, then resynchronise the shadows with what memory holds.
            t.corrupted += 1;
            for o in live.iter_mut() {
                let mut got = vec![0; o.shadow.len()];
                m.cpu_read(o.addr, &mut got).unwrap();
                o.shadow = got;
            }
        }
        let findings = m.take_findings();
        if rule == BounceRule::Exact || policy == Policy::A {
            assert!(findings.is_empty(), "{findings:?}");
        }
        assert!(m.pool().is_consistent());
        assert_eq!(m.active_mappings(), 0);
    }
    t
}

fn scenarios() -> usize {
    if cfg!(miri) {
        10
    } else {
        std::env::var("DMASLAB_RANDOM_SCENARIOS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000)
    }
}

#[test]
fn a_and_c_never_corrupt_and_exact_bouncing_is_exact() {
    let n = scenarios();
    let mut linux = Tally::default();
    for (k, fdm) in [FromDeviceMap::Clean, FromDeviceMap::Invalidate]
        .into_iter()
        .enumerate()
    {
        for policy in [Policy::A, Policy::C] {
            let rule = if policy == Policy::C {
                BounceRule::Exact
            } else {
                BounceRule::Never
            };
            let t = run(policy, rule, fdm, 0xd3a5_0000 + k as u64, n);
            eprintln!("policy {policy} rule {} {fdm:?}: {t:?}", rule.name());
            assert_eq!(t.corrupted, 0, "policy {policy} {fdm:?} corrupted: {t:?}");
            assert_eq!(
                (t.exact_fp, t.exact_fn),
                (0, 0),
                "exact rule vs ground truth: {t:?}"
            );
            if policy == Policy::A {
                assert_eq!(t.needs, 0, "policy A shares no line: {t:?}");
            } else {
                assert!(t.needs > 0 && t.bounces == t.needs, "{t:?}");
                linux.scenarios += t.scenarios;
                linux.needs += t.needs;
                linux.linux_fp += t.linux_fp;
                linux.linux_fn += t.linux_fn;
            }
        }
    }
    eprintln!(
        "policy C, {} mappings, {} need a bounce: exact FP 0 FN 0; Linux size rule FP {} FN {}",
        linux.scenarios, linux.needs, linux.linux_fp, linux.linux_fn
    );
    assert!(
        linux.linux_fp > 0,
        "the size rule bounces safe mappings: {linux:?}"
    );
}

#[test]
fn linux_size_rule_false_negatives_corrupt_and_policy_b_direct_corrupts() {
    let n = scenarios();
    let t = run(
        Policy::C,
        BounceRule::LinuxSize,
        FromDeviceMap::Clean,
        0x11,
        n,
    );
    eprintln!("policy C with the Linux size rule: {t:?}");
    assert!(
        t.linux_fn > 0,
        "sub-buffer mappings escape the size rule: {t:?}"
    );
    assert!(
        t.corrupted <= t.linux_fn,
        "only its false negatives can corrupt: {t:?}"
    );
    let b = run(Policy::B, BounceRule::Never, FromDeviceMap::Clean, 0x22, n);
    eprintln!("policy B, direct kmalloc mappings: {b:?}");
    assert!(b.corrupted > 0, "the model shows the hazard: {b:?}");
}
