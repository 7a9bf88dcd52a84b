//! A connection's unsent bytes: control messages in small owned buffers and piece data as
//! references into mappings, written with one vectored write per readiness event.
//!
//! With an RC4 stream (MSE) bytes are encrypted as they are queued, so order is kept.
//! Control bytes are capped by the caller ([`Outbound::control_bytes`]); piece data is capped
//! by how many blocks the caller lets be in flight.

use crate::net::disk::Block;
use crate::proto::bt::mse::Rc4;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Most slices handed to one `writev`.
const MAX_SLICES: usize = 64;

enum Seg {
    Bytes(Vec<u8>, usize),
    Block(Block),
    /// Piece data copied out to be encrypted.
    Data(Vec<u8>, usize),
}

impl Seg {
    fn rest(&self) -> &[u8] {
        match self {
            Seg::Bytes(b, at) | Seg::Data(b, at) => &b[*at..],
            Seg::Block(b) => b.bytes(),
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Seg::Bytes(_, at) | Seg::Data(_, at) => *at += n,
            Seg::Block(b) => b.range.start += n,
        }
    }
}

#[derive(Default)]
pub struct Outbound {
    segs: VecDeque<Seg>,
    control: usize,
    data: usize,
    /// Set when the peer negotiated an RC4 stream (MSE): everything queued after is
    /// encrypted as it is queued, piece data copied out of the mapping.
    cipher: Option<Box<Rc4>>,
}

impl Outbound {
    pub fn encrypt_with(&mut self, cipher: Box<Rc4>) {
        self.cipher = Some(cipher);
    }

    /// Queues control bytes (appended to the last buffer when that is small).
    pub fn push_bytes(&mut self, mut bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(c) = &mut self.cipher {
            c.apply(&mut bytes);
        }
        self.control += bytes.len();
        if let Some(Seg::Bytes(last, _)) = self.segs.back_mut() {
            if last.len() + bytes.len() <= 4096 {
                last.extend_from_slice(&bytes);
                return;
            }
        }
        self.segs.push_back(Seg::Bytes(bytes, 0));
    }

    /// Queues a piece: its 13-byte header and the data, unsent bytes of a mapping.
    pub fn push_block(&mut self, header: Vec<u8>, block: Block) {
        self.push_bytes(header);
        self.data += block.range.len();
        match &mut self.cipher {
            Some(c) => {
                let mut copy = block.bytes().to_vec();
                c.apply(&mut copy);
                self.segs.push_back(Seg::Data(copy, 0));
            }
            None => self.segs.push_back(Seg::Block(block)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Unsent control bytes.
    pub fn control_bytes(&self) -> usize {
        self.control
    }

    /// Unsent piece data bytes.
    pub fn data_bytes(&self) -> usize {
        self.data
    }

    /// Writes until the socket would block or the queue is empty. Returns (bytes written,
    /// piece data bytes among them); `WouldBlock` is not an error.
    pub fn write_to(&mut self, out: &mut impl Write) -> io::Result<(usize, usize)> {
        let (mut total, mut data) = (0, 0);
        while !self.segs.is_empty() {
            let slices: Vec<IoSlice<'_>> = self
                .segs
                .iter()
                .take(MAX_SLICES)
                .map(|s| IoSlice::new(s.rest()))
                .collect();
            let n = match out.write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n;
            let mut left = n;
            while left > 0 {
                let seg = self.segs.front_mut().expect("wrote more than queued");
                let len = seg.rest().len();
                let step = left.min(len);
                match seg {
                    Seg::Bytes(..) => self.control -= step,
                    Seg::Block(_) | Seg::Data(..) => {
                        self.data -= step;
                        data += step;
                    }
                }
                seg.advance(step);
                left -= step;
                if step == len {
                    self.segs.pop_front();
                }
            }
        }
        Ok((total, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mmap::MappedFile;
    use std::sync::Arc;

    /// A writer that takes at most `cap` bytes per call, then would block after `calls`.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            let n = buf.len().min(self.cap);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_in_order_across_partial_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data");
        std::fs::write(&p, b"0123456789").unwrap();
        let map = Arc::new(MappedFile::open(&p).unwrap());
        let mut q = Outbound::default();
        q.push_bytes(b"ab".to_vec());
        q.push_block(
            b"H".to_vec(),
            Block {
                map: crate::net::disk::Bytes::Map(Arc::clone(&map)),
                range: 2..6,
            },
        );
        q.push_bytes(b"cd".to_vec());
        assert_eq!((q.control_bytes(), q.data_bytes()), (5, 4));
        let mut w = Trickle {
            got: Vec::new(),
            cap: 3,
            calls: 2,
        };
        assert_eq!(q.write_to(&mut w).unwrap(), (6, 3));
        assert!(!q.is_empty());
        w.calls = 10;
        assert_eq!(q.write_to(&mut w).unwrap(), (3, 1));
        assert_eq!(w.got, b"abH2345cd");
        assert!(q.is_empty());
        assert_eq!((q.control_bytes(), q.data_bytes()), (0, 0));
    }
}
