//! The scheduler's wake-up, coalescing and backoff rules, on paused time.

use super::*;

const COALESCE: Duration = Duration::from_millis(100);

fn scheduler(poll: Duration) -> (Scheduler, mpsc::UnboundedSender<Outcome>, Arc<Notify>) {
    let wake = Arc::new(Notify::new());
    let (s, tx) = Scheduler::new(
        wake.clone(),
        poll,
        COALESCE,
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

/// Drives a fresh scheduler to idle: the start-up claim finds nothing, it registers and
/// re-checks, and the re-check finds nothing.
async fn idle(s: &mut Scheduler, tx: &mpsc::UnboundedSender<Outcome>) {
    let first = s.next_ticket().await.unwrap();
    assert!(!first.register);
    tx.send(Outcome::Empty(first)).unwrap();
    let recheck = ticket_within(s, Duration::from_millis(1))
        .await
        .expect("re-check at once");
    assert!(recheck.register, "going idle registers first");
    tx.send(Outcome::Empty(recheck)).unwrap();
}

#[tokio::test(start_paused = true)]
async fn idles_after_a_registered_recheck_then_waits_for_the_timer() {
    let (mut s, tx, _wake) = scheduler(Duration::from_secs(5));
    idle(&mut s, &tx).await;
    assert!(ticket_within(&mut s, Duration::from_millis(4900))
        .await
        .is_none());
    let polled = ticket_within(&mut s, Duration::from_millis(200))
        .await
        .expect("fallback timer");
    assert!(
        polled.deregister,
        "an idle relay's claim ends its registration if it finds events"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wake_up_claims_at_once_when_idle() {
    let (mut s, tx, wake) = scheduler(Duration::from_secs(3600));
    idle(&mut s, &tx).await;
    wake.notify_one();
    assert!(ticket_within(&mut s, Duration::from_millis(1))
        .await
        .is_some());
}

#[tokio::test(start_paused = true)]
async fn busy_claims_coalesce_and_ignore_wake_ups() {
    let (mut s, tx, wake) = scheduler(Duration::from_secs(3600));
    idle(&mut s, &tx).await;
    wake.notify_one();
    let t = s.next_ticket().await.unwrap();
    tx.send(Outcome::Partial(t, 2)).unwrap();
    wake.notify_one();
    let start = Instant::now();
    let t = s.next_ticket().await.unwrap();
    assert_eq!(
        start.elapsed(),
        COALESCE,
        "the next claim waits for the coalescing interval"
    );
    assert!(
        !t.deregister,
        "the partial batch's acknowledgement ended the registration"
    );
    tx.send(Outcome::Empty(t)).unwrap();
    let t = ticket_within(&mut s, Duration::from_millis(1))
        .await
        .expect("re-check at once");
    assert!(t.register, "busy → empty: register, then re-check");
}

#[tokio::test(start_paused = true)]
async fn a_recheck_that_finds_events_removes_its_registration() {
    let (mut s, tx, wake) = scheduler(Duration::from_secs(3600));
    idle(&mut s, &tx).await;
    wake.notify_one();
    // Busy with two deliveries: one takes the new events, the other finds nothing left.
    let busy = s.next_ticket().await.unwrap();
    tx.send(Outcome::Full(busy)).unwrap();
    let a = s.next_ticket().await.unwrap();
    let b = s.next_ticket().await.unwrap();
    tx.send(Outcome::Empty(b)).unwrap();
    let recheck = ticket_within(&mut s, Duration::from_millis(1))
        .await
        .expect("re-check at once");
    assert!(recheck.register);
    assert!(
        recheck.deregister,
        "events found by the re-check: its acknowledgement ends the registration it made"
    );
    tx.send(Outcome::Partial(recheck, 50)).unwrap();
    tx.send(Outcome::Partial(a, 50)).unwrap();
    let next = s.next_ticket().await.unwrap();
    assert!(!next.register && !next.deregister, "busy and unregistered");
}

#[tokio::test(start_paused = true)]
async fn a_lone_event_does_not_make_the_relay_busy() {
    let (mut s, tx, wake) = scheduler(Duration::from_secs(3600));
    idle(&mut s, &tx).await;
    wake.notify_one();
    let t = s.next_ticket().await.unwrap();
    tx.send(Outcome::Partial(t, 1)).unwrap();
    assert!(
        ticket_within(&mut s, Duration::from_millis(1))
            .await
            .is_some(),
        "no coalescing wait"
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_batch_does_not_cancel_a_newer_wake_up() {
    let (mut s, tx, wake) = scheduler(Duration::from_secs(3600));
    idle(&mut s, &tx).await;
    wake.notify_one();
    let first = s.next_ticket().await.unwrap();
    wake.notify_one(); // an event committed after `first` was issued
    tokio::task::yield_now().await;
    tx.send(Outcome::Empty(first)).unwrap();
    assert!(ticket_within(&mut s, Duration::from_millis(1))
        .await
        .is_some());
}

#[tokio::test(start_paused = true)]
async fn full_batches_ramp_up_to_the_limit() {
    let (mut s, tx, _wake) = scheduler(Duration::from_secs(3600));
    let t = s.next_ticket().await.unwrap();
    tx.send(Outcome::Full(t)).unwrap();
    for _ in 0..2 {
        assert!(ticket_within(&mut s, Duration::from_millis(1))
            .await
            .is_some());
    }
    for _ in 0..3 {
        tx.send(Outcome::Full(t)).unwrap();
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
    let mut t = s.next_ticket().await.unwrap();
    for _ in 0..5 {
        tx.send(Outcome::Failed(t, Failure::default())).unwrap();
        let start = Instant::now();
        wake.notify_one();
        t = s.next_ticket().await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(50),
            "retried after {:?}",
            start.elapsed()
        );
    }
    tx.send(Outcome::Failed(t, Failure::default())).unwrap();
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
async fn a_failing_relay_withdraws_its_registration_until_a_batch_gets_through() {
    let (mut s, tx, wake) = scheduler(Duration::from_secs(3600));
    idle(&mut s, &tx).await;
    wake.notify_one();
    let woken = s.next_ticket().await.unwrap();
    assert!(woken.deregister && !woken.withdraw);
    // Its deregistration rolled back with the batch: withdraw before the next claim, and
    // keep withdrawing while attempts fail (a failed attempt may not have reached it).
    tx.send(Outcome::Failed(woken, Failure::default())).unwrap();
    let retry = s.next_ticket().await.unwrap();
    assert!(retry.withdraw, "the retry withdraws the registration first");
    assert!(
        !retry.deregister,
        "withdrawn already, nothing to deregister on commit"
    );
    tx.send(Outcome::Failed(retry, Failure::default())).unwrap();
    let retry = s.next_ticket().await.unwrap();
    assert!(retry.withdraw, "still failing: withdraw again");
    // Delivery works again, and the table empties: register again the usual way.
    tx.send(Outcome::Partial(retry, 1)).unwrap();
    let next = s.next_ticket().await.unwrap();
    assert!(!next.withdraw && !next.deregister && !next.register);
    tx.send(Outcome::Empty(next)).unwrap();
    let recheck = ticket_within(&mut s, Duration::from_millis(1))
        .await
        .unwrap();
    assert!(
        recheck.register,
        "idle again: registers before the re-check"
    );
}

#[tokio::test(start_paused = true)]
async fn a_registration_made_by_a_failed_batch_is_withdrawn() {
    let (mut s, tx, _wake) = scheduler(Duration::from_secs(3600));
    let first = s.next_ticket().await.unwrap();
    tx.send(Outcome::Empty(first)).unwrap();
    let recheck = s.next_ticket().await.unwrap();
    assert!(recheck.register);
    // It registered (autocommit) and then failed to claim: the registration stands.
    tx.send(Outcome::Failed(recheck, Failure::default()))
        .unwrap();
    assert!(s.next_ticket().await.unwrap().withdraw);
}

#[tokio::test(start_paused = true)]
async fn an_unregistered_relay_has_nothing_to_withdraw() {
    let (mut s, tx, _wake) = scheduler(Duration::from_secs(3600));
    let first = s.next_ticket().await.unwrap();
    tx.send(Outcome::Failed(first, Failure::default())).unwrap();
    let retry = s.next_ticket().await.unwrap();
    assert!(!retry.withdraw && !retry.register && !retry.deregister);
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_stream() {
    let wake = Arc::new(Notify::new());
    let token = CancellationToken::new();
    let (mut s, _tx) = Scheduler::new(
        wake,
        Duration::from_secs(1),
        COALESCE,
        4,
        Duration::from_secs(1),
        token.clone(),
    );
    s.next_ticket().await.unwrap();
    token.cancel();
    assert!(s.next_ticket().await.is_none());
}
