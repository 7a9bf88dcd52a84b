//! A block the disk pool read for a peer goes out: framed as a `piece` message behind the
//! control bytes already queued, counted; unless its piece was evicted since it was asked
//! (the read may have run after the hole was punched), then it is refused like any request
//! for a piece we no longer have (BEP-6 reject, or a choke for a peer without it). A read
//! that failed is rejected.

use super::*;
use crate::net::disk::Block;
use crate::proto::bt::peer_wire::BlockRef;

impl Loop {
    /// Returns the connection's slot when it is still open (to be flushed).
    pub(super) fn block_read(
        &mut self,
        conn: u64,
        block: BlockRef,
        seq: u64,
        result: Result<Block, String>,
    ) -> Option<usize> {
        let slot = self.by_key(conn)?;
        let c = self.conns[slot].as_mut().expect("found by key");
        c.reading = c.reading.saturating_sub(block.length as usize);
        let ih = c.torrent.as_ref().map(|t| t.shape.info_hash);
        match result {
            // Its piece was evicted since: the read may have seen the hole.
            Ok(_) if ih.is_some_and(|ih| self.evict_log.since(seq, &ih, block.index)) => {
                c.wire.served();
                c.wire.refuse_missing(block);
                self.stats.blocks_rejected.add(1);
            }
            Ok(data) => {
                c.wire.served();
                c.out.push_bytes(c.wire.take_output());
                let mut header = Vec::with_capacity(13);
                peer_wire::write_piece_header(block.index, block.begin, block.length, &mut header);
                c.out.push_block(header, data);
                self.stats.blocks_served.add(1);
                if let Some(t) = &c.torrent {
                    if let Some(e) = self.torrents.get_mut(&t.shape.info_hash) {
                        e.blocks += 1;
                    }
                }
            }
            Err(e) => {
                log::warn!("peer: reading a block for {}: {e}", c.addr);
                self.stats.disk_errors.add(1);
                c.wire.failed(block);
            }
        }
        Some(slot)
    }
}
