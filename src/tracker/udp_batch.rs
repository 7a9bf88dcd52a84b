//! Batched UDP I/O for the tracker loop: `recvmmsg` takes up to [`BATCH`] datagrams in one
//! system call and `sendmmsg` sends their answers in one more, each answer to the address its
//! request came from. The only unsafe code of the tracker lives here.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Bytes kept per received datagram: a byte more than the largest request accepted, so an
/// oversized one is seen as such (the kernel truncates it to this).
const SLOT: usize = crate::proto::tracker::udp::MAX_REQUEST_LEN + 1;

/// Buffers for one batch of requests and their answers.
pub struct Batch {
    packets: Vec<[u8; SLOT]>,
    lens: [usize; BATCH],
    names: [libc::sockaddr_storage; BATCH],
    name_lens: [libc::socklen_t; BATCH],
    /// The answer to each request (empty: none).
    answers: Vec<Vec<u8>>,
    received: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            packets: vec![[0u8; SLOT]; BATCH],
            lens: [0; BATCH],
            // SAFETY: an all-zero sockaddr_storage is a valid (unspecified) address.
            names: unsafe { zeroed() },
            name_lens: [0; BATCH],
            answers: (0..BATCH).map(|_| Vec::with_capacity(2048)).collect(),
            received: 0,
        }
    }
}

impl Batch {
    /// Receives what is waiting, up to [`BATCH`] datagrams; `Ok(0)` when nothing is.
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: all-zero iovec and mmsghdr values are valid; every pointer set below points
        // into `self`, which outlives the call, with the lengths of the buffers it names.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..BATCH {
            iov[i].iov_base = self.packets[i].as_mut_ptr().cast();
            iov[i].iov_len = SLOT;
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: `msgs` holds BATCH initialized headers as described above.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.received = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(e),
            };
        }
        self.received = n as usize;
        for (i, m) in msgs.iter().enumerate().take(self.received) {
            self.lens[i] = m.msg_len as usize;
            self.name_lens[i] = m.msg_hdr.msg_namelen;
        }
        Ok(self.received)
    }

    /// Calls `answer(datagram, sender, out)` for each received datagram; what it leaves in
    /// `out` is that datagram's answer (senders of an unknown address family get none).
    pub fn answer_each(&mut self, mut answer: impl FnMut(&[u8], SocketAddr, &mut Vec<u8>)) {
        for i in 0..self.received {
            // SAFETY: the kernel filled `names[i]` with `name_lens[i]` bytes of address.
            let addr = unsafe { socket2::SockAddr::new(self.names[i], self.name_lens[i]) };
            let out = &mut self.answers[i];
            out.clear();
            if let Some(from) = addr.as_socket() {
                answer(&self.packets[i][..self.lens[i]], from, out);
            }
        }
    }

    /// Sends every non-empty answer to its request's sender. Answers the socket cannot take
    /// now are dropped, as the network could have. Returns how many were sent.
    pub fn send_answers(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: as in `receive`; only answers with bytes get a header.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut count = 0;
        for i in 0..self.received {
            if self.answers[i].is_empty() {
                continue;
            }
            iov[count].iov_base = self.answers[i].as_mut_ptr().cast();
            iov[count].iov_len = self.answers[i].len();
            let h = &mut msgs[count].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.name_lens[i];
            h.msg_iov = &mut iov[count];
            h.msg_iovlen = 1;
            count += 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: `msgs[sent..count]` are initialized headers pointing into `self`.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(sent),
                    // One unreachable client must not cost the others their answers.
                    _ => {
                        log::trace!("udp tracker: send: {e}");
                        sent += 1;
                        continue;
                    }
                }
            }
            sent += n as usize;
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_a_batch_and_answers_each_sender() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let to = server.local_addr().unwrap();
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8; 5], to).unwrap();
        }
        let mut batch = Batch::default();
        let mut got = 0;
        for _ in 0..1000 {
            if got == 3 {
                break;
            }
            got += batch.receive(server.as_raw_fd()).unwrap();
            batch.answer_each(|packet, from, out| {
                assert_eq!((packet.len(), from.ip()), (5, to.ip()));
                out.push(packet[0] + 10);
            });
            batch.send_answers(server.as_raw_fd()).unwrap();
        }
        assert_eq!(got, 3);
        for (i, c) in clients.iter().enumerate() {
            c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 8];
            let n = c.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i as u8 + 10]);
        }
        assert_eq!(batch.receive(server.as_raw_fd()).unwrap(), 0);
    }
}
