//! Unix sockets between the host and its supervisors: socket pairs, and messages
//! that carry descriptors (`SCM_RIGHTS`).
//!
//! Every descriptor made or received here is close-on-exec, so that no program
//! started meanwhile inherits it; a supervisor hands its job exactly the three
//! standard descriptors.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most descriptors one message may carry.
pub const MAX_FDS: usize = 8;

/// A connected pair of Unix sockets of `kind` (`SOCK_STREAM`, `SOCK_SEQPACKET`).
pub fn socket_pair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: a valid array for the two new descriptors.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two new descriptors that we alone own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets or clears `O_NONBLOCK`.
pub fn set_nonblocking(fd: BorrowedFd, nonblocking: bool) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a valid descriptor.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if nonblocking {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends `data` with `fds` attached, in one message. `flags` are `send` flags;
/// `MSG_NOSIGNAL` is always added (a closed peer is an error, not a SIGPIPE).
pub fn send_with_fds(
    socket: BorrowedFd,
    data: &[u8],
    fds: &[BorrowedFd],
    flags: libc::c_int,
) -> io::Result<usize> {
    assert!(fds.len() <= MAX_FDS && !data.is_empty());
    let mut control = ControlBuffer::new();
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; the fields set below point at live locals.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer is large enough and aligned for one header of
        // `payload` bytes; CMSG_FIRSTHDR/CMSG_DATA stay inside it.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(payload) as _;
            let data = libc::CMSG_DATA(header).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: a valid socket and message.
        let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, flags | libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives one message into `buf`: its length (0 at end of stream) and the
/// descriptors it carried, close-on-exec. A message that carried more than
/// [`MAX_FDS`] descriptors is refused (the extra ones are closed by the kernel).
/// `flags` are `recv` flags (`MSG_DONTWAIT`).
pub fn recv_with_fds(
    socket: BorrowedFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = ControlBuffer::new();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in `send_with_fds`.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    let len = loop {
        // SAFETY: a valid socket and message.
        let len =
            unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
        if len >= 0 {
            break len as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into our buffer.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message carried too many descriptors",
        ));
    }
    Ok((len, fds))
}

/// Room for one `SCM_RIGHTS` header with [`MAX_FDS`] descriptors, suitably aligned.
#[repr(C, align(8))]
struct ControlBuffer([u8; 128]);

impl ControlBuffer {
    fn new() -> ControlBuffer {
        // SAFETY: CMSG_SPACE is a pure computation.
        let needed = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
        debug_assert!(needed as usize <= 128);
        ControlBuffer([0; 128])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn descriptors_travel_with_their_message() {
        let (a, b) = socket_pair(libc::SOCK_SEQPACKET).unwrap();
        let (read_end, write_end) = crate::spawn::pipe().unwrap();
        send_with_fds(a.as_fd(), b"J", &[write_end.as_fd()], 0).unwrap();
        drop(write_end);
        let mut buf = [0; 16];
        let (len, mut fds) = recv_with_fds(b.as_fd(), &mut buf, 0).unwrap();
        assert_eq!(&buf[..len], b"J");
        assert_eq!(fds.len(), 1);
        // SAFETY: plain fcntl on a descriptor we own.
        let flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        std::fs::File::from(fds.pop().unwrap())
            .write_all(b"through")
            .unwrap();
        let mut text = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "through");
        // The peer gone: end of stream.
        drop(a);
        assert_eq!(recv_with_fds(b.as_fd(), &mut buf, 0).unwrap().0, 0);
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_signal() {
        let (a, b) = socket_pair(libc::SOCK_STREAM).unwrap();
        drop(b);
        let err = send_with_fds(a.as_fd(), b"x", &[], 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }
}
