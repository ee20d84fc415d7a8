//! The server side of one received request, as a state machine without I/O:
//! RFC 3261 §17.2. While the proxy routes, a retransmitted request gets the
//! last provisional response again. After the final response: an INVITE
//! answered with a non-2xx over UDP retransmits it (Timer G) until the ACK or
//! Timer H, then absorbs ACKs for T4 (Timer I); an INVITE answered with a 2xx
//! (the accepted state of RFC 6026) and a non-INVITE (Timer J) absorb
//! retransmissions for 64·T1 over UDP; over TCP and TLS they end at once.

use std::time::{Duration, Instant};

use super::Timers;

/// What the proxy core must do after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStep {
    /// Nothing.
    Wait,
    /// Send the last response again (if one was sent).
    Resend,
    /// The transaction is over: forget it.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Routing: no final response yet.
    Proceeding,
    /// A non-2xx final response to an INVITE, waiting for the ACK.
    Completed,
    /// The ACK came: absorbing ACK retransmissions (Timer I).
    Confirmed,
    /// A 2xx to an INVITE, or a final response to a non-INVITE: absorbing
    /// request retransmissions.
    Absorbing,
    /// Over.
    Terminated,
}

/// One server transaction (see the module documentation).
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: State,
    /// Timer G: the retransmission interval and when it fires next.
    interval: Duration,
    next_resend: Option<Instant>,
    /// Timer H, I or J: when the transaction ends.
    end: Option<Instant>,
}

impl ServerTransaction {
    /// A transaction for a request received over a reliable transport (TCP,
    /// TLS) or not (UDP).
    pub fn new(invite: bool, reliable: bool, timers: Timers) -> ServerTransaction {
        ServerTransaction {
            invite,
            reliable,
            timers,
            state: State::Proceeding,
            interval: timers.t1,
            next_resend: None,
            end: None,
        }
    }

    /// Whether the final response has been sent.
    pub fn is_final(&self) -> bool {
        self.state != State::Proceeding
    }

    /// Whether the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// When [`Self::on_timer`] is due next (`None`: only an event moves it).
    pub fn wake(&self) -> Option<Instant> {
        match (self.next_resend, self.end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether Timer G runs (a non-2xx final response to an INVITE over UDP
    /// is being retransmitted until the ACK): the one timer after the final
    /// response whose instant matters.
    pub fn is_resending(&self) -> bool {
        self.next_resend.is_some()
    }

    /// The final response `code` was sent at `now`.
    pub fn on_final(&mut self, code: u16, now: Instant) -> ServerStep {
        let success = (200..300).contains(&code);
        let linger = self.timers.t1 * 64;
        self.state = match (self.invite && !success, self.reliable) {
            (true, reliable) => {
                // Timer G over UDP; Timer H in any case.
                self.next_resend = (!reliable).then(|| now + self.timers.t1);
                self.end = Some(now + linger);
                State::Completed
            }
            (false, false) => {
                self.end = Some(now + linger);
                State::Absorbing
            }
            (false, true) => State::Terminated,
        };
        if self.is_terminated() { ServerStep::End } else { ServerStep::Wait }
    }

    /// The request came again.
    pub fn on_retransmission(&mut self) -> ServerStep {
        match self.state {
            State::Terminated => ServerStep::Wait,
            _ => ServerStep::Resend,
        }
    }

    /// An ACK for the final response arrived at `now`.
    pub fn on_ack(&mut self, now: Instant) -> ServerStep {
        if self.state != State::Completed {
            return ServerStep::Wait;
        }
        self.next_resend = None;
        if self.reliable {
            self.state = State::Terminated;
            return ServerStep::End;
        }
        self.state = State::Confirmed;
        self.end = Some(now + self.timers.t4);
        ServerStep::Wait
    }

    /// A timer wake-up at `now`.
    pub fn on_timer(&mut self, now: Instant) -> ServerStep {
        if self.end.is_some_and(|end| now >= end) {
            self.state = State::Terminated;
            self.next_resend = None;
            self.end = None;
            return ServerStep::End;
        }
        match self.next_resend {
            Some(at) if now >= at => {
                self.interval = (self.interval * 2).min(self.timers.t2);
                self.next_resend = Some(now + self.interval);
                ServerStep::Resend
            }
            _ => ServerStep::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timers = Timers { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) };

    #[test]
    fn a_retransmitted_request_gets_the_last_response_until_the_end() {
        let mut s = ServerTransaction::new(true, false, T);
        assert!(!s.is_final());
        assert_eq!(s.on_retransmission(), ServerStep::Resend);
        assert_eq!(s.wake(), None, "no timer runs while routing");
    }

    #[test]
    fn a_non_2xx_to_an_invite_over_udp_is_resent_by_timer_g_until_timer_h() {
        let t0 = Instant::now();
        let mut s = ServerTransaction::new(true, false, T);
        assert_eq!(s.on_final(486, t0), ServerStep::Wait);
        let mut resent = Vec::new();
        loop {
            let now = s.wake().expect("timers run");
            match s.on_timer(now) {
                ServerStep::Resend => resent.push((now - t0).as_millis()),
                ServerStep::End => {
                    assert_eq!(now - t0, T.t1 * 64, "Timer H");
                    break;
                }
                ServerStep::Wait => {}
            }
        }
        // Timer G: T1, then doubling up to T2.
        assert_eq!(&resent[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
        assert!(s.is_terminated());
    }

    #[test]
    fn the_ack_stops_timer_g_and_timer_i_absorbs_acks_for_t4() {
        let t0 = Instant::now();
        let mut s = ServerTransaction::new(true, false, T);
        s.on_final(486, t0);
        let ack_at = t0 + Duration::from_millis(700);
        assert_eq!(s.on_ack(ack_at), ServerStep::Wait);
        assert_eq!(s.wake(), Some(ack_at + T.t4));
        assert_eq!(s.on_ack(ack_at), ServerStep::Wait, "a retransmitted ACK is absorbed");
        assert_eq!(s.on_timer(ack_at + T.t4), ServerStep::End);
    }

    #[test]
    fn over_tcp_there_is_no_timer_g_and_the_ack_ends_it() {
        let t0 = Instant::now();
        let mut s = ServerTransaction::new(true, true, T);
        s.on_final(404, t0);
        assert_eq!(s.wake(), Some(t0 + T.t1 * 64), "Timer H only");
        assert_eq!(s.on_ack(t0), ServerStep::End);
    }

    #[test]
    fn a_2xx_or_a_non_invite_final_absorbs_retransmissions_over_udp_and_ends_at_once_over_tcp() {
        let t0 = Instant::now();
        for (invite, code) in [(true, 200), (false, 200), (false, 404)] {
            let mut udp = ServerTransaction::new(invite, false, T);
            assert_eq!(udp.on_final(code, t0), ServerStep::Wait);
            assert_eq!(udp.on_retransmission(), ServerStep::Resend);
            assert_eq!(udp.on_ack(t0), ServerStep::Wait);
            assert_eq!(udp.wake(), Some(t0 + T.t1 * 64));
            assert_eq!(udp.on_timer(t0 + T.t1 * 64), ServerStep::End);
            let mut tcp = ServerTransaction::new(invite, true, T);
            assert_eq!(tcp.on_final(code, t0), ServerStep::End);
        }
    }
}
