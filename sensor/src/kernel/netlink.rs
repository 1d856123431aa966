//! Link change notifications from the kernel: a route netlink socket
//! subscribed to the link group (RTMGRP_LINK), woken through tokio. The
//! messages are not decoded: every notification only means "look again",
//! and the caller asks the kernel for the interface by name
//! (`preflight::interface_index`), which also covers notifications lost to
//! a full socket buffer.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// `RTMGRP_LINK`: new, changed and deleted links.
const RTMGRP_LINK: u32 = 1;

/// A subscription to link changes in this network namespace.
pub struct LinkEvents {
    socket: AsyncFd<OwnedFd>,
}

impl LinkEvents {
    pub fn open() -> io::Result<LinkEvents> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = RTMGRP_LINK;
        // SAFETY: `addr` is a valid sockaddr_nl and the length is its size.
        let bound = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the descriptor, so it stays open for as
        // long as it is registered.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|err| err.into_parts().1)?;
        Ok(LinkEvents { socket })
    }

    /// Waits for at least one notification, then takes every one queued.
    pub async fn changed(&mut self) -> io::Result<()> {
        let mut guard = self.socket.readable_mut().await?;
        let mut buffer = [0u8; 8192];
        loop {
            let fd = guard.get_inner().as_raw_fd();
            // SAFETY: `buffer` is valid for writes of its length.
            let read = unsafe { libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
            if read >= 0 {
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => {
                    guard.clear_ready();
                    return Ok(());
                }
                // The socket buffer overflowed: some notifications were
                // lost, which changes nothing since the caller looks again.
                Some(libc::ENOBUFS) | Some(libc::EINTR) => continue,
                _ => return Err(err),
            }
        }
    }
}
