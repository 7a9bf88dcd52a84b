//! Which peers may download (BEP-3 choking), as pure functions the loop calls every
//! rotation. Seeding ([`round_robin`], what the gateway does for stored files, libtorrent's
//! seeding default): every interested peer gets a turn, the ones that waited longest first,
//! and a peer keeps its slot for a quantum before it yields. Downloading ([`choose`], for the
//! coming client's reciprocation): the fastest keep their slots and one slot rotates
//! optimistically.

/// One interested peer as the choker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: usize,
    /// Bytes we sent it in the last rotation period.
    pub rate: u64,
    /// When it was last unchoked (or connected), in any monotonic unit: the smallest waited
    /// longest.
    pub last_unchoked: u64,
    /// It may download now.
    pub unchoked: bool,
}

/// Seeding slots round-robin: peers unchoked less than `quantum` ago keep their slot; the
/// remaining slots go to the peers that waited longest (choked ones first, then unchoked
/// ones whose quantum is over, so an uncontended peer is not choked for nothing). Times are
/// in one monotonic unit.
pub fn round_robin(interested: &[Candidate], slots: usize, now: u64, quantum: u64) -> Vec<usize> {
    let mut order: Vec<&Candidate> = interested.iter().collect();
    // Within quantum first (oldest turn first), then the waiting choked peers (longest
    // waiting first), then unchoked peers past their quantum.
    order.sort_by_key(|c| {
        let in_turn = c.unchoked && now.saturating_sub(c.last_unchoked) < quantum;
        let rank = match (in_turn, c.unchoked) {
            (true, _) => 0,
            (false, false) => 1,
            (false, true) => 2,
        };
        (rank, c.last_unchoked, c.id)
    });
    order.iter().take(slots).map(|c| c.id).collect()
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
            unchoked: false,
        }
    }

    #[test]
    fn seeding_slots_go_round() {
        let up = |id, last| Candidate {
            id,
            rate: 1_000_000,
            last_unchoked: last,
            unchoked: true,
        };
        // Two fast peers hold both slots; three others wait.
        let mut peers = vec![up(1, 0), up(2, 0), c(3, 0, 0), c(4, 0, 5), c(5, 0, 9)];
        // Within their quantum they keep the slots, however fast the others might be.
        assert_eq!(round_robin(&peers, 2, 10, 30), vec![1, 2]);
        // Past it, the peers that waited longest take over.
        assert_eq!(round_robin(&peers, 2, 40, 30), vec![3, 4]);
        // After enough rounds everyone had a turn.
        let mut served = std::collections::BTreeSet::new();
        let mut now = 40;
        for _ in 0..5 {
            let chosen = round_robin(&peers, 2, now, 30);
            for p in &mut peers {
                let on = chosen.contains(&p.id);
                if on && !p.unchoked {
                    p.last_unchoked = now;
                }
                if !on && p.unchoked {
                    p.last_unchoked = now;
                }
                p.unchoked = on;
            }
            served.extend(chosen);
            now += 30;
        }
        assert_eq!(served.len(), 5);
        // No contention: nobody is choked for nothing.
        assert_eq!(round_robin(&[up(7, 0)], 2, 1000, 30), vec![7]);
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
