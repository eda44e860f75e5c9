//! `TCP_NODELAY` for the PostgreSQL connections, which sqlx 0.9.0 forgot to set.
//!
//! sqlx 0.9.0 stopped setting `TCP_NODELAY` on its sockets (its PR #4022; reported as issue
//! #4335, fixed upstream in PR #4336, not released as of 2026-11-30). Without it, Nagle's
//! algorithm holds back the second small packet of a request until the server's delayed
//! ACK arrives: about 40 ms per round trip over TCP (the Unix socket has no such stall).
//! The runner's write path is many short statements, so this made PostgreSQL over TCP
//! several times slower than the database allows.
//!
//! sqlx gives no handle on its socket, so after each new connection this sets
//! `TCP_NODELAY` on every TCP socket of this process connected to the database's address
//! (found through `/proc/self/fd` and `getpeername`). Setting it twice, or on a socket that
//! has it, changes nothing. The choices not taken: vendoring a patched sqlx-core (a
//! megabyte of copied code to keep up to date), going back to sqlx 0.8 (an API change
//! across the store), or the Unix socket (no help for runners on other hosts). Remove
//! this when sqlx releases the fix.

use std::net::SocketAddr;

/// Sets `TCP_NODELAY` on this process's TCP sockets connected to `peers`; returns how many
/// sockets it set. Best effort: a socket it cannot read is skipped.
#[cfg(target_os = "linux")]
pub fn set_on_sockets_to(peers: &[SocketAddr]) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut set = 0;
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // Only sockets (the link reads `socket:[inode]`).
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|p| p.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        if peer_of(fd).is_some_and(|p| peers.contains(&p)) && set_nodelay(fd) {
            set += 1;
        }
    }
    set
}

#[cfg(not(target_os = "linux"))]
pub fn set_on_sockets_to(_peers: &[SocketAddr]) -> usize {
    0
}

/// The peer address of socket `fd`, if it is a connected TCP (IPv4 or IPv6) socket.
#[cfg(target_os = "linux")]
fn peer_of(fd: i32) -> Option<SocketAddr> {
    // SAFETY: getsockopt and getpeername write at most the lengths given into buffers of
    // those sizes, owned here; a wrong or closed fd makes them fail, which is checked.
    unsafe {
        let mut kind: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let ok = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        );
        if ok != 0 || kind != libc::SOCK_STREAM {
            return None;
        }
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getpeername(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) != 0
        {
            return None;
        }
        match i32::from(addr.ss_family) {
            libc::AF_INET => {
                let a = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
            }
            libc::AF_INET6 => {
                let a = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::new(ip.into(), u16::from_be(a.sin6_port)))
            }
            _ => None,
        }
    }
}

#[cfg(target_os = "linux")]
fn set_nodelay(fd: i32) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `on`, which lives here.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nodelay(s: &std::net::TcpStream) -> bool {
        s.nodelay().expect("read TCP_NODELAY")
    }

    #[test]
    fn sockets_to_the_database_get_tcp_nodelay_and_others_are_left_alone() {
        let db = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let to_db = std::net::TcpStream::connect(db.local_addr().expect("addr")).expect("connect");
        let to_other =
            std::net::TcpStream::connect(other.local_addr().expect("addr")).expect("connect");
        assert!(!nodelay(&to_db) && !nodelay(&to_other), "off by default");
        let set = set_on_sockets_to(&[db.local_addr().expect("addr")]);
        assert!(set >= 1, "{set}");
        assert!(nodelay(&to_db), "the database's socket");
        assert!(
            !nodelay(&to_other),
            "another peer's socket is left as it was"
        );
    }
}
