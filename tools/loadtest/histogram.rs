//! The wire → book histogram from `/metrics`: parsing, window deltas, quantiles.

use super::*;

/// Cumulative `(upper bound s, count)` of `polypy_wire_to_book_seconds_bucket`, ascending.
pub(super) fn parse_buckets(text: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("polypy_wire_to_book_seconds_bucket{") else {
            continue;
        };
        let (labels, value) = rest.split_once('}').context("bucket line")?;
        let le = labels
            .split(',')
            .find_map(|l| l.trim().strip_prefix("le="))
            .context("bucket without le")?
            .trim_matches('"');
        let bound = if le.eq_ignore_ascii_case("+inf") {
            f64::INFINITY
        } else {
            le.parse().with_context(|| format!("le={le}"))?
        };
        // The value may be followed by an exemplar or timestamp.
        let count: f64 = value
            .split_whitespace()
            .next()
            .context("bucket value")?
            .parse()?;
        out.push((bound, count));
    }
    if out.is_empty() {
        bail!("/metrics has no polypy_wire_to_book_seconds_bucket lines");
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

/// Bucket deltas of two cumulative scrapes (same bounds).
pub(super) fn delta_buckets(
    before: &[(f64, f64)],
    after: &[(f64, f64)],
) -> anyhow::Result<Vec<(f64, f64)>> {
    if before.len() != after.len() {
        bail!("histogram bounds changed between scrapes");
    }
    Ok(before
        .iter()
        .zip(after)
        .map(|(b, a)| (a.0, (a.1 - b.1).max(0.0)))
        .collect())
}

/// Quantile of a cumulative histogram, linear inside the bucket (as Prometheus'
/// `histogram_quantile`). In the +Inf bucket: the highest finite bound.
pub(super) fn quantile(cum: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = cum.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev_bound = 0.0;
    let mut prev_count = 0.0;
    for &(bound, count) in cum {
        if count >= rank {
            if bound.is_infinite() {
                return Some(prev_bound);
            }
            let inside = count - prev_count;
            let frac = if inside > 0.0 {
                (rank - prev_count) / inside
            } else {
                1.0
            };
            return Some(prev_bound + (bound - prev_bound) * frac);
        }
        prev_bound = bound;
        prev_count = count;
    }
    Some(prev_bound)
}

/// Share of samples ≤ `x` seconds (exact when `x` is a bound; linear inside a bucket).
pub(super) fn share_le(cum: &[(f64, f64)], x: f64) -> Option<f64> {
    let total = cum.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let mut prev_bound = 0.0;
    let mut prev_count = 0.0;
    for &(bound, count) in cum {
        if x <= bound {
            if bound.is_infinite() {
                return Some(prev_count / total);
            }
            let frac = (x - prev_bound) / (bound - prev_bound);
            return Some((prev_count + (count - prev_count) * frac) / total);
        }
        prev_bound = bound;
        prev_count = count;
    }
    Some(1.0)
}
