//! The open-files limit the HTTP server's connection cap needs.

/// Files the daemon needs open besides its HTTP connections: the database's pool, the
/// webhook's and the API's connections, logs, the forecast's scratch copy.
const OTHER_FILES: u64 = 256;

/// Raises the open-files limit to what `[http] max_connections` needs (as far as the hard
/// limit allows; a soft limit of 1,024 is common), so the connection cap is what refuses
/// connections, not `accept` failing; warns when even the hard limit is too low.
pub fn open_files_for(max_connections: u32) {
    let want = u64::from(max_connections) + OTHER_FILES;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur >= want {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: want.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    if !ok || raised.rlim_cur < want {
        tracing::warn!(
            open_files = if ok { raised.rlim_cur } else { limit.rlim_cur },
            needed = want,
            "the open-files limit is below [http] max_connections plus the daemon's own files: raise it (systemd: LimitNOFILE) or lower max_connections"
        );
    }
}
