//! A fixed-size set of pieces, one bit each, in the peer wire's order (piece 0 is the high
//! bit of byte 0), so a BEP-3 bitfield message converts without reshuffling.

/// A set of piece indexes below `len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl Bitfield {
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            bytes: vec![0; len.div_ceil(8) as usize],
            len,
            ones: 0,
        }
    }

    /// Every piece set.
    pub fn full(len: u32) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// From a BEP-3 bitfield payload: None if its length is wrong or spare bits are set.
    pub fn from_wire(bytes: &[u8], len: u32) -> Option<Bitfield> {
        if bytes.len() != len.div_ceil(8) as usize {
            return None;
        }
        let spare = (8 - len % 8) % 8;
        if spare > 0 && bytes.last().is_some_and(|&b| b & ((1u8 << spare) - 1) != 0) {
            return None;
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    pub fn as_wire(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many pieces are set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets piece `i`; returns true if it was not set (out of range: false).
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }

    /// Clears piece `i`; returns true if it was set.
    pub fn clear(&mut self, i: u32) -> bool {
        if !self.get(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] &= !(0x80 >> (i % 8));
        self.ones -= 1;
        true
    }

    /// The set pieces, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_order_and_counts() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0) && b.set(9) && !b.set(9) && !b.set(10));
        assert_eq!(b.as_wire(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![0, 9]);
        assert!(b.clear(0) && !b.clear(0));
        assert_eq!(Bitfield::from_wire(&[0xff, 0xc0], 10).unwrap().count(), 10);
        assert!(
            Bitfield::from_wire(&[0xff, 0xe0], 10).is_none(),
            "spare bit set"
        );
        assert!(Bitfield::from_wire(&[0xff], 10).is_none(), "too short");
        assert!(Bitfield::full(10).is_full());
    }
}
