//! When to claim: turns wake-ups (notifications, the fallback timer) and the outcomes of
//! finished batches into a stream of claim tickets.
//!
//! The stream is consumed with bounded concurrency, so a ticket is only taken when a
//! delivery slot is free: we never claim more than we can deliver. Within that bound the
//! relay is in one of two modes:
//!
//! - **Idle**: the table was empty at the last claim, and the relay is registered in
//!   `event_log_waiting`, which makes the insert trigger NOTIFY. A notification claims at
//!   once, so a lone event goes within milliseconds.
//! - **Busy**: the last claim found more than one event. The relay is not registered, so producers do not
//!   NOTIFY (every notifying commit takes a global lock in PostgreSQL), and the relay claims
//!   at most once per `coalesce` interval: at 2,000 events/s and 100 ms that is ten inserts
//!   of ~200 events a second instead of thousands of tiny ones.
//!
//! Transitions: a full batch claims again at once and asks for one more (ramping up to the
//! in-flight limit); a short batch makes the relay busy; an empty batch while busy registers
//! the relay and claims once more (an event committed before the registration became visible
//! sent no notification: this re-check finds it, and if it finds any its acknowledgement
//! removes the registration again); an empty batch after that makes it idle. A
//! failed batch is retried after an exponential, jittered backoff that wake-ups do not cut
//! short, so a failing relay also withdraws its registration (its next attempt deletes it
//! before claiming): a notification would wake nothing, and during a sink outage every
//! producer commit would pay the notification lock for the whole outage. It registers again
//! the usual way once delivery works and the table is empty.
//!
//! No event waits longer than the fallback interval (`POLL_INTERVAL`): the timer claims
//! whenever no claim was issued for that long, whether or not a notification came. Only a
//! producer transaction that read the registration table before the relay's registration
//! committed, and committed after the re-check's snapshot, can miss a notification; the
//! timer picks its events up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// Permission to claim one batch, and what to do around the claim.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    /// The wake-up generation when the ticket was issued.
    generation: u64,
    /// Register in `event_log_waiting` before claiming.
    pub register: bool,
    /// Remove the registration in the acknowledging transaction, if the claim finds events.
    pub deregister: bool,
    /// Remove the registration before claiming, in a statement of its own: delivery failed,
    /// so the registration must go even if this batch fails too.
    pub withdraw: bool,
}

/// How a batch ended, reported back to the scheduler.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The claim came back full: there is probably more.
    Full(Ticket),
    /// The claim found this many events, fewer than a batch.
    Partial(Ticket, usize),
    /// The claim found nothing unclaimed at its snapshot.
    Empty(Ticket),
    /// The batch was rolled back; its events stay and will be claimed again. Carries the
    /// error, logged once when delivery starts failing rather than on every retry.
    Failed(Ticket, Failure),
}

/// Why a batch failed, with the context an operator (or Sentry) needs to find it.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    /// The error and its causes, on one line.
    pub error: String,
    /// The error's kind, e.g. `sink`, `timeout`, `postgres`.
    pub kind: String,
    /// The sink the batch was for.
    pub sink: &'static str,
    /// Events the batch had claimed when it failed (0: it failed before claiming).
    pub events: usize,
    /// Lowest and highest claimed event ids (0 when nothing was claimed).
    pub first_id: i64,
    pub last_id: i64,
}

pub struct Scheduler {
    wake: Arc<Notify>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    shutdown: CancellationToken,
    poll_interval: Duration,
    coalesce: Duration,
    max_in_flight: usize,
    backoff: Backoff,
    /// Claims wanted now.
    credits: usize,
    /// Counts wake-ups; an empty batch only cancels wake-ups older than its claim.
    generation: u64,
    /// Registered in `event_log_waiting` (as far as we know): producers notify us.
    registered: bool,
    /// The next ticket registers first.
    register_next: bool,
    /// Tickets withdraw the registration first, until one that did comes back.
    withdraw_next: bool,
    next_poll: Instant,
    retry_at: Option<Instant>,
    /// While busy, no claim before this: events coalesce into fewer, larger inserts.
    not_before: Option<Instant>,
}

impl Scheduler {
    /// A scheduler and the sender batches report their [`Outcome`] on. It starts with one
    /// credit: a relay drains at once on start.
    pub fn new(
        wake: Arc<Notify>,
        poll_interval: Duration,
        coalesce: Duration,
        max_in_flight: usize,
        max_backoff: Duration,
        shutdown: CancellationToken,
    ) -> (Self, mpsc::UnboundedSender<Outcome>) {
        let (tx, outcomes) = mpsc::unbounded_channel();
        let scheduler = Scheduler {
            wake,
            outcomes,
            shutdown,
            poll_interval,
            coalesce,
            max_in_flight,
            backoff: Backoff::new(Duration::from_millis(100), max_backoff),
            credits: 1,
            generation: 0,
            registered: false,
            register_next: false,
            withdraw_next: false,
            next_poll: Instant::now() + poll_interval,
            retry_at: None,
            not_before: None,
        };
        (scheduler, tx)
    }

    /// The tickets as a stream that ends at shutdown: stop claiming, first phase of drain.
    pub fn into_stream(self) -> impl futures::Stream<Item = Ticket> {
        futures::stream::unfold(self, |mut s| async move {
            s.next_ticket().await.map(|t| (t, s))
        })
    }

    /// Waits until a claim is due; `None` once shutdown was requested.
    pub async fn next_ticket(&mut self) -> Option<Ticket> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            while let Ok(outcome) = self.outcomes.try_recv() {
                self.absorb(outcome);
            }
            let now = Instant::now();
            let gate = match (self.retry_at, self.not_before) {
                (Some(r), Some(c)) => Some(r.max(c)),
                (r, c) => r.or(c),
            }
            .filter(|t| *t > now);
            if self.credits > 0 && gate.is_none() {
                self.credits -= 1;
                self.retry_at = None;
                self.not_before = None;
                self.next_poll = now + self.poll_interval;
                let register = std::mem::take(&mut self.register_next);
                let ticket = Ticket {
                    generation: self.generation,
                    register,
                    // A re-check that finds events is busy again, so it removes the
                    // registration it just made. Without this a relay whose re-check raced
                    // a busy delivery stayed registered, unknowingly, for as long as the
                    // load lasted, and every producer commit notified.
                    deregister: register || (self.registered && !self.withdraw_next),
                    withdraw: self.withdraw_next,
                };
                return Some(ticket);
            }
            let deadline = gate.unwrap_or(self.next_poll).min(self.next_poll);
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return None,
                Some(outcome) = self.outcomes.recv() => self.absorb(outcome),
                _ = self.wake.notified() => self.woken(),
                _ = tokio::time::sleep_until(deadline) => {
                    if deadline == self.next_poll {
                        tracing::trace!("fallback poll");
                        self.woken();
                    }
                }
            }
        }
    }

    fn woken(&mut self) {
        self.generation += 1;
        self.credits = self.credits.max(1);
    }

    fn absorb(&mut self, outcome: Outcome) {
        if let Outcome::Full(t) | Outcome::Partial(t, _) | Outcome::Empty(t) = &outcome {
            if t.withdraw {
                // It deleted the registration before claiming, and the batch got through.
                self.withdraw_next = false;
                self.registered = false;
            }
        }
        match outcome {
            Outcome::Full(ticket) => {
                self.recovered();
                self.found_events(ticket);
                self.credits = (self.credits + 2).min(self.max_in_flight);
            }
            Outcome::Partial(ticket, count) => {
                self.recovered();
                self.found_events(ticket);
                self.credits = self.credits.max(1);
                // A lone event is a trickle: look again at once (and most likely go idle).
                // Several events mean they are arriving faster than we claim: busy, so
                // wait out the coalescing interval and take them in one insert.
                if count > 1 {
                    self.not_before = Some(Instant::now() + self.coalesce);
                }
            }
            Outcome::Empty(ticket) => {
                self.recovered();
                if ticket.register {
                    self.registered = true;
                }
                if !self.registered {
                    // Going idle: register, then look once more (see the module docs).
                    self.register_next = true;
                    self.credits = self.credits.max(1);
                } else if ticket.generation == self.generation {
                    self.credits = 0;
                }
            }
            Outcome::Failed(ticket, failure) => {
                let delay = self.backoff.next_delay();
                // Once per outage, at ERROR (and so to Sentry, where `tags.*` fields become
                // tags); every retry only at DEBUG.
                if self.backoff.failures() == 1 {
                    tracing::error!(
                        error = %failure.error,
                        tags.sink = failure.sink,
                        tags.error_kind = %failure.kind,
                        batch_size = failure.events,
                        first_id = failure.first_id,
                        last_id = failure.last_id,
                        "delivery is failing: batches roll back and are retried with backoff (events stay in PostgreSQL)"
                    );
                }
                tracing::debug!(
                    error = %failure.error,
                    ?delay,
                    failures = self.backoff.failures(),
                    "batch failed; backing off"
                );
                self.retry_at = Some(Instant::now() + delay);
                self.credits = self.credits.max(1);
                // Our batch rolled back, and with it any deregistration it carried; a
                // registration it made before claiming was committed on its own.
                if self.registered || ticket.register {
                    self.withdraw_next = true;
                }
            }
        }
    }

    /// A claim found events: its acknowledgement removed our registration if it carried one.
    fn found_events(&mut self, ticket: Ticket) {
        if ticket.deregister {
            self.registered = false;
        }
    }

    fn recovered(&mut self) {
        if self.backoff.failures() > 0 {
            tracing::info!(failures = self.backoff.failures(), "delivery recovered");
            self.backoff.reset();
        }
    }
}

#[cfg(test)]
mod tests;
