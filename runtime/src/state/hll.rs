//! HyperLogLog distinct counts, computed exactly as Redis computes them
//! (`hyperloglog.c` in Redis 7: 2^14 six-bit registers, MurmurHash64A with
//! seed `0xadc83b19`, the register index from the hash's low 14 bits and the
//! run of zeros above them, and Ertl's estimator), so the in-process backend
//! and `PFCOUNT` over the same items give the same number. Standard error
//! 0.81 %. Small sets are kept sparse (sorted register/value pairs) and go
//! dense (16 KiB) past [`SPARSE_MAX`] registers, as Redis does.

/// Registers: 2^14.
pub const REGISTERS: usize = 1 << P;
/// Sparse registers kept before going dense (Redis's default
/// `hll-sparse-max-bytes` 3000 holds about this many).
pub const SPARSE_MAX: usize = 1500;

const P: u32 = 14;
const Q: u32 = 64 - P;
const SEED: u64 = 0xadc8_3b19;
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// A HyperLogLog: add items, merge others, count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hll {
    /// Nonzero registers, sorted by index.
    Sparse(Vec<(u16, u8)>),
    /// Every register.
    Dense(Box<[u8; REGISTERS]>),
}

impl Default for Hll {
    fn default() -> Self {
        Hll::Sparse(Vec::new())
    }
}

impl Hll {
    /// Adds `item`; true if a register changed (as `PFADD` answers 1).
    pub fn add(&mut self, item: &[u8]) -> bool {
        let (index, rank) = position(item);
        self.raise(index, rank)
    }

    fn raise(&mut self, index: u16, rank: u8) -> bool {
        match self {
            Hll::Dense(regs) => {
                let r = &mut regs[index as usize];
                if *r < rank {
                    *r = rank;
                    return true;
                }
                false
            }
            Hll::Sparse(pairs) => match pairs.binary_search_by_key(&index, |&(i, _)| i) {
                Ok(at) if pairs[at].1 >= rank => false,
                Ok(at) => {
                    pairs[at].1 = rank;
                    true
                }
                Err(at) => {
                    pairs.insert(at, (index, rank));
                    if pairs.len() > SPARSE_MAX {
                        self.densify();
                    }
                    true
                }
            },
        }
    }

    fn densify(&mut self) {
        if let Hll::Sparse(pairs) = self {
            let mut regs = Box::new([0u8; REGISTERS]);
            for &(i, r) in pairs.iter() {
                regs[i as usize] = r;
            }
            *self = Hll::Dense(regs);
        }
    }

    /// Takes the larger of each register from `other` (`PFMERGE`).
    pub fn merge(&mut self, other: &Hll) {
        match other {
            Hll::Sparse(pairs) => {
                for &(i, r) in pairs {
                    self.raise(i, r);
                }
            }
            Hll::Dense(theirs) => {
                self.densify();
                if let Hll::Dense(ours) = self {
                    for (a, &b) in ours.iter_mut().zip(theirs.iter()) {
                        *a = (*a).max(b);
                    }
                }
            }
        }
    }

    /// The estimated number of distinct items (`PFCOUNT`).
    pub fn count(&self) -> u64 {
        let mut histogram = [0u32; Q as usize + 2];
        match self {
            Hll::Dense(regs) => {
                for &r in regs.iter() {
                    histogram[r as usize] += 1;
                }
            }
            Hll::Sparse(pairs) => {
                histogram[0] = (REGISTERS - pairs.len()) as u32;
                for &(_, r) in pairs {
                    histogram[r as usize] += 1;
                }
            }
        }
        estimate(&histogram)
    }

    /// The estimated number of distinct items in the union of `hlls`
    /// (`PFCOUNT k1 k2 …`), without changing them.
    pub fn count_union<'a>(hlls: impl IntoIterator<Item = &'a Hll>) -> u64 {
        let mut union = Hll::default();
        for h in hlls {
            union.merge(h);
        }
        union.count()
    }

    /// Bytes held, for memory accounting.
    pub fn bytes(&self) -> usize {
        match self {
            Hll::Sparse(pairs) => pairs.capacity() * 4,
            Hll::Dense(_) => REGISTERS,
        }
    }
}

/// The register an item falls in and the value it offers: the hash's low
/// 14 bits, and one more than the zeros above them (Redis `hllPatLen`).
fn position(item: &[u8]) -> (u16, u8) {
    let hash = murmur64a(item, SEED);
    let index = (hash & (REGISTERS as u64 - 1)) as u16;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Ertl's estimator over the register histogram (Redis `hllCount`).
fn estimate(histogram: &[u32]) -> u64 {
    let m = REGISTERS as f64;
    let q = Q as usize;
    let mut z = m * tau((m - f64::from(histogram[q + 1])) / m);
    for j in (1..=q).rev() {
        z += f64::from(histogram[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    (ALPHA_INF * m * m / z).round() as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

/// MurmurHash64A, as Redis's `hyperloglog.c` has it (little-endian reads).
fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let (chunks, tail) = key.as_chunks::<8>();
    for chunk in chunks {
        let mut k = u64::from_le_bytes(*chunk);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(items: impl IntoIterator<Item = String>) -> Hll {
        let mut h = Hll::default();
        for i in items {
            h.add(i.as_bytes());
        }
        h
    }

    /// The numbers Redis 7.0.15 (Debian bookworm) answered for the same
    /// items: `PFADD h item-0 … item-(n-1)`, then `PFCOUNT h`; `a` = x0…x2999,
    /// `b` = x2000…x4999, `PFCOUNT a b`. Same hash, same registers, same
    /// estimator: the same counts, sparse and dense alike.
    #[test]
    fn counts_are_the_ones_redis_gives() {
        for (n, redis) in
            [(1, 1), (2, 2), (10, 10), (100, 100), (1000, 996), (10_000, 9991), (100_000, 100_648)]
        {
            let h = of((0..n).map(|i| format!("item-{i}")));
            assert_eq!(h.count(), redis, "{n} items");
        }
        let a = of((0..3000).map(|i| format!("x{i}")));
        let b = of((2000..5000).map(|i| format!("x{i}")));
        assert_eq!((a.count(), b.count(), Hll::count_union([&a, &b])), (2985, 2974, 4970));
        assert_eq!(of(["".into(), "é".into(), "card:1234".into()]).count(), 3);
    }

    #[test]
    fn sparse_and_dense_agree_and_adding_twice_changes_nothing() {
        let mut h = of((0..SPARSE_MAX as u32 / 2).map(|i| format!("k{i}")));
        assert!(matches!(h, Hll::Sparse(_)));
        let sparse = h.count();
        let mut dense = h.clone();
        dense.densify();
        assert_eq!(dense.count(), sparse);
        assert!(!h.add(b"k0"), "a second add of one item changes no register");
        let h2 = of((0..20_000).map(|i| format!("k{i}")));
        assert!(matches!(h2, Hll::Dense(_)));
        h.merge(&h2);
        assert_eq!(h.count(), h2.count(), "h's items are a subset of h2's");
        assert!(h2.bytes() == REGISTERS && of(["a".into()]).bytes() < 64);
    }
}
