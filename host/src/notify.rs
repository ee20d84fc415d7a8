//! The systemd service manager's notification protocol (`sd_notify(3)`),
//! spoken directly: one datagram per state change to the Unix socket named by
//! `NOTIFY_SOCKET` (a path, or an abstract name written `@name`). Without that
//! variable (not started by systemd with `Type=notify`) every call does
//! nothing.
//!
//! | when | sent |
//! |---|---|
//! | every listener bound, every tenant's policy serving (or the start's bound reached) | `READY=1` |
//! | a reload (SIGHUP) begins | `RELOADING=1` and `MONOTONIC_USEC=` (the monotonic clock, µs) |
//! | it ends, applied or refused | `READY=1` |
//! | shutdown begins | `STOPPING=1` |
//! | every half `WatchdogSec`, while the event loop and the policy engine answer | `WATCHDOG=1` |

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, if anywhere.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd gives the service (`NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC` with `WATCHDOG_PID` naming this process).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt as _;
                    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
                }
                None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
            };
            let socket = UnixDatagram::unbound().ok()?;
            Some((socket, addr))
        });
        let pid_is_ours = std::env::var("WATCHDOG_PID")
            .map_or(true, |p| p.trim().parse::<u32>().is_ok_and(|p| p == std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && pid_is_ours)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog interval systemd asks for (`WatchdogSec`), if any.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled())
    }

    /// Sends `state` (lines of `KEY=VALUE`); a failure is logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some((socket, addr)) = &self.socket else { return };
        if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
            tracing::warn!(error = %e, state, "the service manager's notification socket refused a state");
        }
    }

    /// `READY=1`.
    pub fn ready(&self) {
        self.notify("READY=1");
    }

    /// `RELOADING=1` with the monotonic clock, as `Type=notify-reload` wants.
    pub fn reloading(&self) {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }
}

/// CLOCK_MONOTONIC in microseconds.
fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000).saturating_add(t.tv_nsec as u64 / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let n = Notifier::default();
        assert!(!n.enabled() && n.watchdog_interval().is_none());
        n.ready();
        n.stopping();
    }

    #[test]
    fn states_arrive_as_datagrams_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            socket: Some((
                UnixDatagram::unbound().expect("socket"),
                std::os::unix::net::SocketAddr::from_pathname(&path).expect("addr"),
            )),
            watchdog: None,
        };
        n.ready();
        n.reloading();
        n.ready();
        n.stopping();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..4 {
            let len = receiver.recv(&mut buf).expect("recv");
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(got[0], "READY=1");
        let (reloading, usec) = got[1].split_once('\n').expect("two lines");
        assert_eq!(reloading, "RELOADING=1");
        assert!(usec.strip_prefix("MONOTONIC_USEC=").and_then(|u| u.parse::<u64>().ok()).is_some_and(|u| u > 0));
        assert_eq!(&got[2..], ["READY=1", "STOPPING=1"]);
    }
}
