//! Asset → book worker: a pure, deterministic function of the token text.
//!
//! Computed once per asset when it is registered with the [`Router`](super::Router); per
//! record the router only indexes a `Vec<u16>` by [`AssetId`](crate::market::AssetId).
//!
//! The hash is 64-bit FNV-1a written out here rather than a hasher from a dependency, so the
//! asset → worker map cannot change with a crate upgrade (logs, recordings and support
//! tickets that name "worker 3" stay meaningful). Token ids are random 77-digit decimals;
//! FNV-1a followed by a multiply-shift reduction spreads them evenly (see the balance test).
//! Cost (~80 ns for a 77-byte id) is paid once per asset, not per message.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of the token text, finished with a 64-bit mixer so the high bits (used by
/// the reduction) depend on every byte.
pub fn token_hash(token: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in token.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    // splitmix64 finaliser.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The worker (`0..workers`) that owns `token`. Stable across runs, machines and versions.
/// `workers == 0` is treated as 1.
pub fn worker_for_token(token: &str, workers: usize) -> usize {
    let n = workers.max(1) as u128;
    // Lemire's multiply-shift reduction: unbiased enough and no division.
    ((u128::from(token_hash(token)) * n) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_pinned() {
        // Golden values: a change here reshuffles every deployment's shards. Do not update
        // them casually.
        let t = "71321045679252212594626385532706912750332728571942532289631379312455583992563";
        assert_eq!(token_hash(t), token_hash(t));
        let golden: Vec<usize> = (1..=8).map(|n| worker_for_token(t, n)).collect();
        assert_eq!(golden, GOLDEN);
        assert_eq!(worker_for_token(t, 0), 0);
    }

    const GOLDEN: [usize; 8] = [0, 1, 1, 2, 2, 3, 4, 4];

    #[test]
    fn spreads_random_tokens_evenly() {
        let mut rng = fastrand::Rng::with_seed(7);
        for workers in [2usize, 3, 4, 8] {
            let mut counts = vec![0usize; workers];
            let n = 4_000;
            for _ in 0..n {
                let token: String = (0..77).map(|_| char::from(b'0' + rng.u8(0..10))).collect();
                counts[worker_for_token(&token, workers)] += 1;
            }
            let expected = n / workers;
            for c in counts {
                assert!(
                    c.abs_diff(expected) < expected / 8,
                    "{workers} workers: {c} vs {expected}"
                );
            }
        }
    }
}
