//! Bytes read from a peer's socket on their way to its [`PeerConn`](crate::proto::bt::peer_conn::PeerConn):
//! on an incoming connection the first 20 bytes tell plaintext from MSE; the obfuscated
//! handshake (whichever side started it) runs to its end, which is handled once; after it, the
//! peer's RC4 stream (when it chose RC4) is undone before the peer wire sees a byte.

use super::{random_bytes, random_pad, Conn, Mse};
use crate::proto::bt::mse;
use crate::proto::bt::peer_conn::Event;

impl Conn {
    /// Takes in bytes just read. `find` names the info-hash behind an MSE `HASH('req2', ..)`.
    /// An error ends the connection, with the reason.
    pub(super) fn take_in(
        &mut self,
        read: &mut [u8],
        now: u64,
        events: &mut Vec<Event>,
        find: &dyn Fn(&[u8; 20]) -> Option<[u8; 20]>,
    ) -> Result<(), String> {
        let mut early = None;
        if let Mse::Undecided(seen) = &mut self.mse {
            seen.extend_from_slice(read);
            let Some(plain) = mse::is_plaintext(seen) else {
                return Ok(());
            };
            early = Some(std::mem::take(seen));
            self.mse = if plain {
                Mse::Off(None)
            } else {
                Mse::Running(Box::new(mse::Receiver::new(random_bytes(), random_pad())))
            };
        }
        let data: &mut [u8] = match early.as_mut() {
            Some(bytes) => bytes,
            None => read,
        };
        let step = match &mut self.mse {
            Mse::Initiating(init) => {
                let mut reply = Vec::new();
                let step = init.receive(data, &mut reply);
                self.out.push_bytes(reply);
                step
            }
            Mse::Running(rx) => {
                let mut reply = Vec::new();
                let step = rx.receive(data, &mut reply, find);
                self.out.push_bytes(reply);
                step
            }
            Mse::Off(rc4) => {
                if let Some(rc4) = rc4 {
                    rc4.apply(data);
                }
                self.wire.receive(data, now, events);
                return Ok(());
            }
            Mse::Undecided(_) => return Ok(()),
        };
        match step {
            Ok(None) => Ok(()),
            Ok(Some(done)) => {
                let recv = match done.crypto {
                    mse::Crypto::Plain => None,
                    mse::Crypto::Rc4 { send, recv } => {
                        self.out.encrypt_with(send);
                        Some(recv)
                    }
                };
                self.mse = Mse::Off(recv);
                self.wire.receive(&done.payload, now, events);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
