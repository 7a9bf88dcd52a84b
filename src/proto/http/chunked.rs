//! The chunked transfer coding (RFC 9112 section 7.1) as a sans-IO decoder: fed the bytes
//! that arrived, it says how many it consumed and which of them are body data. A body is
//! complete only after the last chunk and the trailer section; a stream that ends anywhere
//! before that is a truncated body, never a short one. Sizes, extension lines and trailers
//! are bounded.

use std::ops::Range;

/// The longest chunk-size line (size, extensions) accepted.
pub const MAX_LINE: usize = 4096;
/// The most trailer bytes accepted.
pub const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size,
    /// After the digits: extensions until CRLF.
    Ext,
    /// Expecting LF after the size line's CR.
    SizeLf,
    Data,
    /// Expecting CR then LF after the data.
    DataCr,
    DataLf,
    /// In the trailer section: at the start of a line.
    TrailerLineStart,
    /// In a trailer field line.
    TrailerLine,
    /// Expecting LF after a CR in the trailer section (`end` tells whether it ends it).
    TrailerLf {
        end: bool,
    },
    Done,
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The decoder's state between feeds.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    size: u64,
    digits: usize,
    line: usize,
    trailers: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

/// What one step of decoding found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input used up.
    pub consumed: usize,
    /// Body data: a range of the input.
    pub data: Option<Range<usize>>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            state: State::Size,
            size: 0,
            digits: 0,
            line: 0,
            trailers: 0,
        }
    }

    /// True once the last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Undoes the delivery of the last `n` data bytes of the previous step (the caller had
    /// no room for them and will feed them again).
    pub fn give_back(&mut self, n: u64) {
        if n > 0 {
            self.size += n;
            self.state = State::Data;
        }
    }

    /// Decodes from `input` until it yields data, finishes, or runs out of input.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::Size => {
                    if let Some(d) = (b as char).to_digit(16) {
                        self.digits += 1;
                        if self.digits > 16 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.size = (self.size << 4) | u64::from(d);
                        i += 1;
                    } else if self.digits == 0 {
                        return Err(ChunkError("chunk size missing"));
                    } else {
                        self.state = State::Ext;
                        self.line = 0;
                    }
                }
                State::Ext => {
                    i += 1;
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(ChunkError("chunk extension line too long"));
                    }
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b'\n' => return Err(ChunkError("bare LF in a chunk size line")),
                        _ => {}
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk size line not ended by CRLF"));
                    }
                    i += 1;
                    self.state = if self.size == 0 {
                        State::TrailerLineStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let n = ((input.len() - i) as u64).min(self.size) as usize;
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Step {
                        consumed: i + n,
                        data: Some(i..i + n),
                    });
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    i += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    i += 1;
                    self.state = State::Size;
                    self.size = 0;
                    self.digits = 0;
                }
                State::TrailerLineStart | State::TrailerLine => {
                    i += 1;
                    self.trailers += 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err(ChunkError("chunked trailers too large"));
                    }
                    let at_start = self.state == State::TrailerLineStart;
                    self.state = match b {
                        b'\r' => State::TrailerLf { end: at_start },
                        b'\n' => return Err(ChunkError("bare LF in the trailers")),
                        _ => State::TrailerLine,
                    };
                }
                State::TrailerLf { end } => {
                    self.trailers += 1;
                    if b != b'\n' {
                        return Err(ChunkError("trailer line not ended by CRLF"));
                    }
                    i += 1;
                    self.state = if end {
                        State::Done
                    } else {
                        State::TrailerLineStart
                    };
                    if end {
                        break;
                    }
                }
            }
        }
        Ok(Step {
            consumed: i,
            data: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece` bytes; the data and whether it completed.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, bool, usize), ChunkError> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let mut pending: Vec<u8> = Vec::new();
        for part in input.chunks(piece) {
            pending.extend_from_slice(part);
            loop {
                let step = d.step(&pending)?;
                if let Some(r) = step.data.clone() {
                    out.extend_from_slice(&pending[r]);
                }
                pending.drain(..step.consumed);
                fed += step.consumed;
                if d.is_done() || (step.consumed == 0 && step.data.is_none()) || pending.is_empty()
                {
                    break;
                }
            }
            if d.is_done() {
                break;
            }
        }
        Ok((out, d.is_done(), fed))
    }

    #[test]
    fn decodes_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for piece in 1..body.len() {
            let (out, done, fed) = decode(body, piece).unwrap();
            assert_eq!(out, b"hello world", "piece {piece}");
            assert!(done);
            assert_eq!(fed, body.len() - 4, "the next request is left alone");
        }
    }

    #[test]
    fn a_cut_body_is_never_complete() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        for cut in 0..body.len() {
            let (_, done, _) = decode(&body[..cut], 3).unwrap();
            assert!(!done, "cut at {cut}");
        }
        assert!(decode(body, 3).unwrap().1);
    }

    #[test]
    fn hostile_sizes_and_lines_are_errors() {
        assert!(decode(b"10000000000000000\r\n", 64).is_err());
        assert!(decode(b"ffffffffffffffff\r\n", 64).is_ok());
        assert!(decode(b"zz\r\n", 64).is_err());
        assert!(decode(b"5\nhello", 64).is_err());
        assert!(decode(b"5\r\nhelloXX", 64).is_err());
        let long = format!("5;{}\r\n", "a".repeat(MAX_LINE + 1));
        assert!(decode(long.as_bytes(), 64).is_err());
        let trailers = format!("0\r\n{}", "X: y\r\n".repeat(MAX_TRAILERS / 6 + 1));
        assert!(decode(trailers.as_bytes(), 64).is_err());
    }
}
