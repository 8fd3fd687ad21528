//! Division-free `x % d == 0` for a divisor fixed at cache creation: the free path and the
//! free-list check run it per object, where a hardware division costs tens of cycles.

/// `off % d == 0` for `d = m << shift` (`m` odd): with `inv = m^-1 mod 2^usize::BITS` and
/// `lim = usize::MAX / d`, `off * inv` rotated right by `shift` is `off / d` when `d` divides
/// `off` and exceeds `lim` otherwise (Granlund and Montgomery; what compilers emit for a
/// constant `d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Divisor {
    pub(crate) shift: u32,
    pub(crate) inv: usize,
    pub(crate) lim: usize,
}

impl Divisor {
    /// The test for divisor `d > 0`.
    pub(crate) const fn new(d: usize) -> Self {
        let shift = d.trailing_zeros();
        Divisor {
            shift,
            inv: odd_inverse(d >> shift),
            lim: usize::MAX / d,
        }
    }

    /// Does the divisor divide `off`?
    #[inline(always)]
    pub(crate) fn divides(self, off: usize) -> bool {
        self.exact_quotient(off).is_some()
    }

    /// `off / d` when the divisor divides `off`, else `None`.
    #[inline(always)]
    pub(crate) fn exact_quotient(self, off: usize) -> Option<usize> {
        let q = off.wrapping_mul(self.inv).rotate_right(self.shift);
        (q <= self.lim).then_some(q)
    }
}

/// The inverse of odd `m` modulo 2^usize::BITS (Newton's iteration doubles the correct bits;
/// `m` itself is right to 3 bits).
const fn odd_inverse(m: usize) -> usize {
    let mut x = m;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2usize.wrapping_sub(m.wrapping_mul(x)));
        i += 1;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_free_remainder_matches_modulo() {
        let step = if cfg!(miri) { 392 } else { 8 };
        for d in (8..=9000usize)
            .step_by(step)
            .chain([24, 40, 96, 192, 4104, 8200])
        {
            let dv = Divisor::new(d);
            assert_eq!((d >> dv.shift).wrapping_mul(dv.inv), 1);
            let every = if cfg!(miri) { 7 } else { 1 };
            for off in (0..4 * d)
                .step_by(every)
                .chain([1 << 21, (1 << 21) - 8, usize::MAX - 7])
            {
                assert_eq!(dv.divides(off), off % d == 0, "{off} % {d}");
                let q = (off % d == 0).then_some(off / d);
                assert_eq!(dv.exact_quotient(off), q, "{off} / {d}");
            }
        }
    }
}
