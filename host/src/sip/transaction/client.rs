//! The client side of one forwarded request to one address, as a state machine
//! without I/O: the RFC 3261 §17.1 client transaction (INVITE: Timers A and B;
//! non-INVITE: Timers E and F), the ACK of a non-2xx final response
//! (§17.1.1.3), the proxy's per-target timer (how long a target may take to
//! answer at all), Timer C once it answered provisionally (§16.6 step 11,
//! §16.7 step 2, §16.8) and CANCEL (§9.1, §16.10). The proxy core feeds it responses, timer wake-ups and
//! an upstream CANCEL, and performs the [`ClientStep`] it returns.

use std::time::{Duration, Instant};

use super::Timers;

/// What the proxy core must do after an input.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientStep {
    /// Send the request again (Timer A or E fired).
    pub retransmit: bool,
    /// Send a CANCEL for the request (upstream cancelled, or the per-target
    /// timer fired while the target rings).
    pub cancel: bool,
    /// ACK the non-2xx final response just received (the INVITE client
    /// transaction does this itself, hop by hop).
    pub ack: bool,
    /// Hand the response just received to the proxy core (a provisional
    /// response other than 100, or a final response).
    pub pass_up: bool,
    /// The transaction is over.
    pub end: Option<ClientEnd>,
}

/// How a client transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEnd {
    /// A final response arrived (handed up in the same step).
    Final(u16),
    /// No final response in time: Timer B or F, or the per-target timer.
    TimedOut,
    /// Cancelled from upstream before the target answered at all, so there is
    /// nothing to CANCEL (§9.1): the proxy core answers upstream itself.
    CancelledBeforeAnswer,
}

/// One client transaction (see the module documentation).
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    invite: bool,
    timers: Timers,
    /// Timer C: how long an INVITE's target that answered provisionally may
    /// take to answer finally (from the request, then from each provisional
    /// response other than 100).
    timer_c: Duration,
    /// When the request was first sent.
    started: Instant,
    /// When the transaction gives up: before any response, the per-target
    /// timer (at most Timer B/F); after a provisional one, Timer C (INVITE) or
    /// Timer F (non-INVITE); after a CANCEL, the wait for its final response.
    deadline: Instant,
    /// The current retransmission interval and when it fires next (never on a
    /// reliable transport, nor for an INVITE once it got a provisional).
    interval: Duration,
    next_retransmit: Option<Instant>,
    provisional: bool,
    cancel_sent: bool,
    /// Whether anything at all came back (RFC 3263 §4.3: an address that
    /// answered is not failed over to the target's next address).
    responded: bool,
}

impl ClientTransaction {
    /// A transaction whose request is sent at `now`, over a reliable transport
    /// (TCP, TLS) or not (UDP). `per_target` is how long the target may take
    /// to answer at all (at most 64×T1, Timer B or F); `timer_c`, how long an
    /// INVITE's target that rings may take to answer finally.
    pub fn new(
        invite: bool,
        reliable: bool,
        timers: Timers,
        per_target: Duration,
        timer_c: Duration,
        now: Instant,
    ) -> ClientTransaction {
        ClientTransaction {
            invite,
            timers,
            timer_c,
            started: now,
            deadline: now + per_target.min(timers.t1 * 64),
            interval: timers.t1,
            next_retransmit: (!reliable).then(|| now + timers.t1),
            provisional: false,
            cancel_sent: false,
            responded: false,
        }
    }

    /// When [`Self::on_timer`] is due next.
    pub fn wake(&self) -> Instant {
        self.next_retransmit.map_or(self.deadline, |r| r.min(self.deadline))
    }

    /// Whether the target answered anything at all.
    pub fn responded(&self) -> bool {
        self.responded
    }

    /// A timer wake-up at `now`.
    pub fn on_timer(&mut self, now: Instant) -> ClientStep {
        let mut step = ClientStep::default();
        if now >= self.deadline {
            // The target rings but did not answer in time: CANCEL it, move on.
            step.cancel = self.invite && self.provisional && !self.cancel_sent;
            self.cancel_sent |= step.cancel;
            step.end = Some(ClientEnd::TimedOut);
            return step;
        }
        if let Some(at) = self.next_retransmit
            && now >= at
        {
            step.retransmit = true;
            self.interval = if self.invite { self.interval * 2 } else { (self.interval * 2).min(self.timers.t2) };
            self.next_retransmit = Some(now + self.interval);
        }
        step
    }

    /// A response `code` to the request (or, with `to_cancel`, to our CANCEL).
    pub fn on_response(&mut self, code: u16, to_cancel: bool, now: Instant) -> ClientStep {
        let mut step = ClientStep::default();
        self.responded = true;
        if to_cancel {
            return step;
        }
        if code < 200 {
            // Proceeding: an INVITE is not retransmitted any more; a non-INVITE
            // is, every T2 (§17.1.2.2).
            self.next_retransmit = if self.invite { None } else { self.next_retransmit.map(|_| now + self.timers.t2) };
            if !self.cancel_sent {
                // The per-target timer is over once the target answered. An
                // INVITE waits under Timer C (restarted by a provisional
                // response other than 100); a non-INVITE, until Timer F.
                self.deadline = match (self.invite, code > 100) {
                    (true, true) => now + self.timer_c,
                    (true, false) if !self.provisional => self.started + self.timer_c,
                    (true, false) => self.deadline,
                    (false, _) => self.started + self.timers.t1 * 64,
                };
            }
            self.provisional = true;
            step.pass_up = code > 100;
            return step;
        }
        step.ack = self.invite && code >= 300;
        step.pass_up = true;
        step.end = Some(ClientEnd::Final(code));
        step
    }

    /// The request was cancelled upstream at `now`.
    pub fn cancel(&mut self, now: Instant) -> ClientStep {
        let mut step = ClientStep::default();
        if !self.invite {
            // A non-INVITE cannot be cancelled; it runs to its final response.
            return step;
        }
        if !self.provisional {
            step.end = Some(ClientEnd::CancelledBeforeAnswer);
        } else if !self.cancel_sent {
            step.cancel = true;
            self.cancel_sent = true;
            // Wait for the 487 (or whatever final answer) as long as Timer B would.
            self.deadline = now + self.timers.t1 * 64;
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timers = Timers { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) };
    const PER_TARGET: Duration = Duration::from_secs(8);
    const TIMER_C: Duration = Duration::from_secs(185);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_invite_over_udp_is_retransmitted_at_doubling_intervals_until_the_target_timer() {
        let t0 = Instant::now();
        let mut c = ClientTransaction::new(true, false, T, PER_TARGET, TIMER_C, t0);
        let mut sent_at = Vec::new();
        loop {
            let now = c.wake();
            let step = c.on_timer(now);
            if step.retransmit {
                sent_at.push((now - t0).as_millis());
            }
            if let Some(end) = step.end {
                assert_eq!(end, ClientEnd::TimedOut);
                assert!(!step.cancel, "nothing to cancel: the target never answered");
                assert_eq!(now - t0, PER_TARGET);
                break;
            }
        }
        // Timer A: 500, 1000, 2000, 4000 ms after the previous send.
        assert_eq!(sent_at, [500, 1500, 3500, 7500]);
    }

    #[test]
    fn timer_b_ends_an_invite_at_64_t1_when_the_target_timer_is_longer() {
        let t0 = Instant::now();
        let mut c = ClientTransaction::new(true, true, T, Duration::from_secs(60), TIMER_C, t0);
        assert_eq!(c.wake(), t0 + T.t1 * 64);
        let step = c.on_timer(c.wake());
        assert_eq!(step, ClientStep { end: Some(ClientEnd::TimedOut), ..ClientStep::default() });
    }

    #[test]
    fn a_non_invite_is_retransmitted_capped_at_t2_and_every_t2_once_proceeding() {
        let t0 = Instant::now();
        let mut c = ClientTransaction::new(false, false, T, Duration::from_secs(60), TIMER_C, t0);
        let mut gaps = Vec::new();
        let mut last = t0;
        for _ in 0..5 {
            let now = c.wake();
            assert!(c.on_timer(now).retransmit);
            gaps.push((now - last).as_millis());
            last = now;
        }
        // Timer E: 500, 1000, 2000, 4000, then capped at T2 = 4000.
        assert_eq!(gaps, [500, 1000, 2000, 4000, 4000]);
        let step = c.on_response(100, false, last + ms(10));
        assert!(!step.pass_up, "100 Trying stays hop by hop");
        assert_eq!(c.wake(), last + ms(10) + T.t2);
    }

    #[test]
    fn a_provisional_stops_invite_retransmissions_and_is_passed_up_except_100() {
        let t0 = Instant::now();
        let mut c = ClientTransaction::new(true, false, T, PER_TARGET, TIMER_C, t0);
        assert!(!c.on_response(100, false, t0 + ms(5)).pass_up);
        assert!(c.responded());
        assert_eq!(c.wake(), t0 + TIMER_C, "no retransmission any more; Timer C from the request");
        let step = c.on_response(180, false, t0 + ms(10));
        assert_eq!(step, ClientStep { pass_up: true, ..ClientStep::default() });
    }

    #[test]
    fn a_ringing_target_is_not_cut_at_the_target_timer_but_at_timer_c_restarted_by_each_provisional() {
        let t0 = Instant::now();
        let mut c = ClientTransaction::new(true, false, T, PER_TARGET, TIMER_C, t0);
        assert_eq!(c.wake(), t0 + T.t1, "Timer A first");
        c.on_response(180, false, t0 + ms(10));
        assert_eq!(c.wake(), t0 + ms(10) + TIMER_C);
        assert_eq!(c.on_timer(t0 + PER_TARGET + ms(1)), ClientStep::default(), "the per-target timer is over");
        c.on_response(100, false, t0 + ms(20));
        assert_eq!(c.wake(), t0 + ms(10) + TIMER_C, "a 100 does not restart Timer C");
        c.on_response(183, false, t0 + ms(30));
        assert_eq!(c.wake(), t0 + ms(30) + TIMER_C);
        let step = c.on_timer(c.wake());
        assert_eq!(step, ClientStep { cancel: true, end: Some(ClientEnd::TimedOut), ..ClientStep::default() });
    }

    #[test]
    fn a_non_invite_that_answered_provisionally_waits_for_timer_f() {
        let t0 = Instant::now();
        let mut c = ClientTransaction::new(false, true, T, ms(1000), TIMER_C, t0);
        assert_eq!(c.wake(), t0 + ms(1000));
        c.on_response(100, false, t0 + ms(10));
        assert_eq!(c.wake(), t0 + T.t1 * 64);
    }

    #[test]
    fn a_non_2xx_final_to_an_invite_is_acked_and_passed_up() {
        let t0 = Instant::now();
        let mut c = ClientTransaction::new(true, false, T, PER_TARGET, TIMER_C, t0);
        let step = c.on_response(503, false, t0 + ms(10));
        assert_eq!(
            step,
            ClientStep { ack: true, pass_up: true, end: Some(ClientEnd::Final(503)), ..ClientStep::default() }
        );
        let step = c.on_response(200, false, t0 + ms(10));
        assert!(!step.ack, "a 2xx is acknowledged end to end, not by the proxy");
        let mut n = ClientTransaction::new(false, false, T, PER_TARGET, TIMER_C, t0);
        assert!(!n.on_response(404, false, t0).ack, "only INVITE transactions ACK");
    }

    #[test]
    fn an_upstream_cancel_before_any_answer_ends_without_a_cancel() {
        let t0 = Instant::now();
        let mut c = ClientTransaction::new(true, false, T, PER_TARGET, TIMER_C, t0);
        let step = c.cancel(t0 + ms(1));
        assert_eq!(step, ClientStep { end: Some(ClientEnd::CancelledBeforeAnswer), ..ClientStep::default() });
    }

    #[test]
    fn an_upstream_cancel_while_ringing_sends_one_cancel_and_waits_for_the_final_answer() {
        let t0 = Instant::now();
        let mut c = ClientTransaction::new(true, false, T, PER_TARGET, TIMER_C, t0);
        c.on_response(180, false, t0 + ms(10));
        let step = c.cancel(t0 + ms(20));
        assert_eq!(step, ClientStep { cancel: true, ..ClientStep::default() });
        assert_eq!(c.cancel(t0 + ms(30)), ClientStep::default(), "one CANCEL only");
        assert_eq!(c.wake(), t0 + ms(20) + T.t1 * 64);
        assert_eq!(c.on_response(200, true, t0 + ms(40)), ClientStep::default(), "the 200 to the CANCEL");
        let step = c.on_response(487, false, t0 + ms(50));
        assert_eq!(step.end, Some(ClientEnd::Final(487)));
        assert!(step.ack && step.pass_up);
    }

    #[test]
    fn a_cancel_requested_before_the_first_provisional_of_a_non_invite_changes_nothing() {
        let t0 = Instant::now();
        let mut c = ClientTransaction::new(false, true, T, PER_TARGET, TIMER_C, t0);
        assert_eq!(c.cancel(t0), ClientStep::default());
        assert_eq!(c.on_response(200, false, t0).end, Some(ClientEnd::Final(200)));
    }
}
