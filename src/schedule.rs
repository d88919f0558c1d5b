//! When to claim: turns wake-ups (notifications, the fallback timer) and the outcomes of
//! finished batches into a stream of claim tickets.
//!
//! The stream is consumed with bounded concurrency, so a ticket is only taken when a
//! delivery slot is free: we never claim more than we can deliver. Within that bound:
//! - a wake-up asks for one claim (a single event goes at once);
//! - a full batch asks for two more (the backlog is probably larger; ramp up to the limit);
//! - a short batch means the table was empty at its snapshot: stop, unless a wake-up came
//!   after that claim was issued (its event may be newer than the snapshot);
//! - a failed batch asks for a retry after an exponential, jittered backoff, and wake-ups
//!   do not cut the backoff short.
//!
//! No event waits longer than the fallback interval: the timer wakes us whenever no claim
//! was issued for that long, whether or not any notification arrived.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// Permission to claim one batch.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    /// The wake-up generation when the ticket was issued.
    generation: u64,
}

/// How a batch ended, reported back to the scheduler.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The claim came back full: there is probably more.
    Full,
    /// The claim came back short (or empty): nothing more was unclaimed at its snapshot.
    Drained(Ticket),
    /// The batch was rolled back; its events stay and will be claimed again. Carries the
    /// error, logged once when delivery starts failing rather than on every retry.
    Failed(String),
}

pub struct Scheduler {
    wake: Arc<Notify>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    shutdown: CancellationToken,
    poll_interval: Duration,
    max_in_flight: usize,
    backoff: Backoff,
    /// Claims wanted now.
    credits: usize,
    /// Counts wake-ups; a short batch only cancels wake-ups older than its claim.
    generation: u64,
    next_poll: Instant,
    retry_at: Option<Instant>,
}

impl Scheduler {
    /// A scheduler and the sender batches report their [`Outcome`] on. It starts with one
    /// credit: a relay drains at once on start.
    pub fn new(
        wake: Arc<Notify>,
        poll_interval: Duration,
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
            max_in_flight,
            backoff: Backoff::new(Duration::from_millis(100), max_backoff),
            credits: 1,
            generation: 0,
            next_poll: Instant::now() + poll_interval,
            retry_at: None,
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
            let backing_off = self.retry_at.is_some_and(|t| t > now);
            if self.credits > 0 && !backing_off {
                self.credits -= 1;
                self.retry_at = None;
                self.next_poll = now + self.poll_interval;
                return Some(Ticket {
                    generation: self.generation,
                });
            }
            let deadline = match self.retry_at {
                Some(t) if t > now => t,
                _ => self.next_poll,
            };
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
        match outcome {
            Outcome::Full => {
                self.recovered();
                self.credits = (self.credits + 2).min(self.max_in_flight);
            }
            Outcome::Drained(ticket) => {
                self.recovered();
                if ticket.generation == self.generation {
                    self.credits = 0;
                }
            }
            Outcome::Failed(error) => {
                let delay = self.backoff.next_delay();
                // Once per outage, at ERROR (and so to Sentry); every retry only at DEBUG.
                if self.backoff.failures() == 1 {
                    tracing::error!(
                        %error,
                        "delivery is failing: batches roll back and are retried with backoff (events stay in PostgreSQL)"
                    );
                }
                tracing::debug!(
                    %error,
                    ?delay,
                    failures = self.backoff.failures(),
                    "batch failed; backing off"
                );
                self.retry_at = Some(Instant::now() + delay);
                self.credits = self.credits.max(1);
            }
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
mod tests {
    use super::*;

    fn scheduler(poll: Duration) -> (Scheduler, mpsc::UnboundedSender<Outcome>, Arc<Notify>) {
        let wake = Arc::new(Notify::new());
        let (s, tx) = Scheduler::new(
            wake.clone(),
            poll,
            4,
            Duration::from_secs(5),
            CancellationToken::new(),
        );
        (s, tx, wake)
    }

    async fn ticket_within(s: &mut Scheduler, d: Duration) -> Option<Ticket> {
        tokio::time::timeout(d, s.next_ticket())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn drains_at_start_then_waits_for_the_timer() {
        let (mut s, tx, _wake) = scheduler(Duration::from_secs(5));
        let first = ticket_within(&mut s, Duration::from_millis(1))
            .await
            .expect("drain on start");
        tx.send(Outcome::Drained(first)).unwrap();
        assert!(ticket_within(&mut s, Duration::from_millis(4900))
            .await
            .is_none());
        assert!(
            ticket_within(&mut s, Duration::from_millis(200))
                .await
                .is_some(),
            "fallback timer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_claims_at_once() {
        let (mut s, tx, wake) = scheduler(Duration::from_secs(3600));
        let first = s.next_ticket().await.unwrap();
        tx.send(Outcome::Drained(first)).unwrap();
        wake.notify_one();
        assert!(ticket_within(&mut s, Duration::from_millis(1))
            .await
            .is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_batch_does_not_cancel_a_newer_wake_up() {
        let (mut s, tx, wake) = scheduler(Duration::from_secs(3600));
        let first = s.next_ticket().await.unwrap();
        wake.notify_one(); // an event committed after `first` was issued
        let _ = ticket_within(&mut s, Duration::from_millis(1))
            .await
            .expect("woken");
        wake.notify_one();
        tokio::task::yield_now().await;
        tx.send(Outcome::Drained(first)).unwrap();
        assert!(ticket_within(&mut s, Duration::from_millis(1))
            .await
            .is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn full_batches_ramp_up_to_the_limit() {
        let (mut s, tx, _wake) = scheduler(Duration::from_secs(3600));
        s.next_ticket().await.unwrap();
        tx.send(Outcome::Full).unwrap();
        for _ in 0..2 {
            assert!(ticket_within(&mut s, Duration::from_millis(1))
                .await
                .is_some());
        }
        for _ in 0..3 {
            tx.send(Outcome::Full).unwrap();
        }
        let mut n = 0;
        while ticket_within(&mut s, Duration::from_millis(1))
            .await
            .is_some()
        {
            n += 1;
        }
        assert_eq!(n, 4, "credits are capped at max_in_flight");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_wake_ups_do_not_cut_it_short() {
        let (mut s, tx, wake) = scheduler(Duration::from_secs(3600));
        s.next_ticket().await.unwrap();
        for _ in 0..5 {
            tx.send(Outcome::Failed(String::new())).unwrap();
            let start = Instant::now();
            wake.notify_one();
            s.next_ticket().await.unwrap();
            assert!(
                start.elapsed() >= Duration::from_millis(50),
                "retried after {:?}",
                start.elapsed()
            );
        }
        tx.send(Outcome::Failed(String::new())).unwrap();
        let start = Instant::now();
        s.next_ticket().await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(1600),
            "backoff grows: {:?}",
            start.elapsed()
        );
        assert!(start.elapsed() <= Duration::from_millis(3200));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_stream() {
        let wake = Arc::new(Notify::new());
        let token = CancellationToken::new();
        let (mut s, _tx) = Scheduler::new(
            wake,
            Duration::from_secs(1),
            4,
            Duration::from_secs(1),
            token.clone(),
        );
        s.next_ticket().await.unwrap();
        token.cancel();
        assert!(s.next_ticket().await.is_none());
    }
}
