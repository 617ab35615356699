//! Newline-delimited framing of a skill's stdout with a bound on each line: a line over the
//! bound is discarded as it arrives (never held whole), only its first and last bytes are
//! kept so that the request it answers can still be named, and reading resumes after it.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// Bytes kept from each end of an oversized line, enough to find its JSON-RPC `id`.
const KEPT_EDGE_BYTES: usize = 256;

/// One frame read from a skill's stdout.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole line, without its newline.
    Line(Vec<u8>),
    /// A line longer than the limit, dropped; `head` and `tail` are its first and last bytes.
    Oversized {
        /// The line's length in bytes, newline excluded.
        length: usize,
        /// Its first bytes.
        head: Vec<u8>,
        /// Its last bytes.
        tail: Vec<u8>,
    },
}

/// A line decoder that yields at most `max_line_bytes` per line and holds little more.
#[derive(Debug)]
pub struct BoundedLines {
    max_line_bytes: usize,
    /// Bytes of the current line already scanned for a newline.
    scanned: usize,
    /// Set while the current line is over the limit and is being dropped.
    discarding: Option<Discarding>,
}

#[derive(Debug)]
struct Discarding {
    length: usize,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Discarding {
    fn take(&mut self, bytes: &[u8]) {
        self.length += bytes.len();
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > KEPT_EDGE_BYTES {
            self.tail.drain(..self.tail.len() - KEPT_EDGE_BYTES);
        }
    }
}

impl BoundedLines {
    /// Returns a decoder whose lines hold at most `max_line_bytes`.
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            scanned: 0,
            discarding: None,
        }
    }
}

impl Decoder for BoundedLines {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            if let Some(discarding) = &mut self.discarding {
                match buffer.iter().position(|&byte| byte == b'\n') {
                    Some(newline) => {
                        discarding.take(&buffer[..newline]);
                        buffer.advance(newline + 1);
                        let done = self.discarding.take().expect("discarding");
                        return Ok(Some(Frame::Oversized {
                            length: done.length,
                            head: done.head,
                            tail: done.tail,
                        }));
                    }
                    None => {
                        discarding.take(buffer);
                        buffer.clear();
                        return Ok(None);
                    }
                }
            }
            let unscanned = &buffer[self.scanned..];
            if let Some(offset) = unscanned.iter().position(|&byte| byte == b'\n') {
                let end = self.scanned + offset;
                self.scanned = 0;
                if end <= self.max_line_bytes {
                    let line = buffer.split_to(end + 1);
                    let mut line = line.to_vec();
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(Some(Frame::Line(line)));
                }
            } else if buffer.len() <= self.max_line_bytes {
                self.scanned = buffer.len();
                return Ok(None);
            }
            // Over the limit: keep the head, drop the rest as it comes.
            self.scanned = 0;
            let head = buffer[..KEPT_EDGE_BYTES.min(buffer.len())].to_vec();
            self.discarding = Some(Discarding {
                length: 0,
                head,
                tail: Vec::new(),
            });
        }
    }

    fn decode_eof(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if let Some(frame) = self.decode(buffer)? {
            return Ok(Some(frame));
        }
        if let Some(done) = self.discarding.take() {
            return Ok(Some(Frame::Oversized {
                length: done.length,
                head: done.head,
                tail: done.tail,
            }));
        }
        if buffer.is_empty() {
            return Ok(None);
        }
        self.scanned = 0;
        Ok(Some(Frame::Line(buffer.split().to_vec())))
    }
}

/// The JSON-RPC id of an oversized message, found in its kept edges: SDKs write `"id"` either
/// first (`{"jsonrpc":"2.0","id":7,...`) or last (`...,"id":7}`).
pub fn oversized_message_id(head: &[u8], tail: &[u8]) -> Option<u64> {
    numeric_ids(tail)
        .last()
        .copied()
        .or_else(|| numeric_ids(head).first().copied())
}

/// Every number written as the value of an `"id"` key in `fragment`, in order. Keys inside
/// JSON strings are escaped (`\"id\"`) and so never match.
fn numeric_ids(fragment: &[u8]) -> Vec<u64> {
    let text = String::from_utf8_lossy(fragment);
    let mut ids = Vec::new();
    let mut rest = text.as_ref();
    while let Some(position) = rest.find("\"id\"") {
        rest = &rest[position + 4..];
        let Some(value) = rest.trim_start().strip_prefix(':') else {
            continue;
        };
        let digits: String = value
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(id) = digits.parse() {
            ids.push(id);
        }
    }
    ids
}

#[cfg(test)]
mod tests;
