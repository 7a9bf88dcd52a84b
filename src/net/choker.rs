//! Which peers may download (BEP-3 choking), as a pure function the loop calls every
//! rotation: the fastest downloaders keep their slots, one slot rotates optimistically among
//! the others so new peers get a chance to show their rate.

/// One interested peer as the choker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: usize,
    /// Bytes we sent it in the last rotation period.
    pub rate: u64,
    /// When it was last unchoked (or connected), in any monotonic unit: the smallest waited
    /// longest.
    pub last_unchoked: u64,
}

/// Picks the peers to unchoke among `interested` (everyone else is choked): `slots - 1` by
/// rate, plus the optimistic one (kept if still interested, else the one waiting longest
/// when `rotate_optimistic`), with free slots filled by rate. Returns the chosen ids and the
/// optimistic id.
pub fn choose(
    interested: &[Candidate],
    slots: usize,
    optimistic: Option<usize>,
    rotate_optimistic: bool,
) -> (Vec<usize>, Option<usize>) {
    if slots == 0 || interested.is_empty() {
        return (Vec::new(), None);
    }
    let mut by_rate: Vec<&Candidate> = interested.iter().collect();
    by_rate.sort_by(|a, b| {
        b.rate
            .cmp(&a.rate)
            .then(a.last_unchoked.cmp(&b.last_unchoked))
    });
    let regular = slots.saturating_sub(1).max(1).min(slots);
    let mut chosen: Vec<usize> = by_rate.iter().take(regular).map(|c| c.id).collect();
    let still_there = optimistic.filter(|o| interested.iter().any(|c| c.id == *o));
    let opt = match still_there {
        Some(o) if !rotate_optimistic => Some(o),
        _ => interested
            .iter()
            .filter(|c| !chosen.contains(&c.id))
            .min_by_key(|c| c.last_unchoked)
            .map(|c| c.id)
            .or(still_there),
    };
    if let Some(o) = opt {
        if !chosen.contains(&o) && chosen.len() < slots {
            chosen.push(o);
        }
    }
    for c in &by_rate {
        if chosen.len() >= slots {
            break;
        }
        if !chosen.contains(&c.id) {
            chosen.push(c.id);
        }
    }
    (chosen, opt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: usize, rate: u64, last: u64) -> Candidate {
        Candidate {
            id,
            rate,
            last_unchoked: last,
        }
    }

    #[test]
    fn fastest_keep_slots_and_one_rotates() {
        let peers = [
            c(1, 100, 5),
            c(2, 300, 5),
            c(3, 0, 1),
            c(4, 0, 2),
            c(5, 200, 5),
        ];
        let (mut got, opt) = choose(&peers, 3, None, true);
        got.sort();
        assert_eq!(opt, Some(3), "waited longest");
        assert_eq!(got, vec![2, 3, 5]);
        // Kept between rotations while interested.
        let (_, opt) = choose(&peers, 3, Some(3), false);
        assert_eq!(opt, Some(3));
        // Rotated: someone else who waited.
        let peers2 = [
            c(1, 100, 5),
            c(2, 300, 5),
            c(3, 0, 9),
            c(4, 0, 2),
            c(5, 200, 5),
        ];
        let (_, opt) = choose(&peers2, 3, Some(3), true);
        assert_eq!(opt, Some(4));
    }

    #[test]
    fn free_slots_are_filled_and_limits_hold() {
        let peers = [c(1, 0, 0), c(2, 0, 0)];
        let (got, _) = choose(&peers, 8, None, true);
        assert_eq!(got.len(), 2);
        let (got, _) = choose(&peers, 1, None, true);
        assert_eq!(got.len(), 1);
        assert_eq!(choose(&[], 4, Some(1), true), (vec![], None));
    }
}
