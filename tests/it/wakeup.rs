//! The wake-up protocol: producers notify only while a relay waits, and no event waits
//! longer than the fallback timer even when no notification comes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use outbox_relay::config::RelayConfig;

use crate::harness::{relay_config, PrivateClickHouse, TestEnv};

/// Counts the notifications on the outbox's channel, as a relay's listener would see them.
async fn count_notifications(env: &TestEnv) -> (Arc<AtomicUsize>, tokio_postgres::Client) {
    let (client, mut connection) =
        tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
            .await
            .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(_) = message {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN \"t_{}.event_log\"",
            env.ch.database.trim_start_matches("t_")
        ))
        .await
        .unwrap();
    (count, client)
}

async fn registered(env: &TestEnv) -> i64 {
    env.client
        .query_one("SELECT count(*) FROM event_log_waiting", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits (up to 5 s) until `n` relays are registered for a notification.
async fn wait_registered(env: &TestEnv, n: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while registered(env).await != n {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_notify_only_while_a_relay_waits() {
    let env = TestEnv::new("notify_waiting").await;
    let (notifications, _listener) = count_notifications(&env).await;

    // No relay: nobody waits, so a commit sends no notification.
    env.client
        .execute("SELECT outbox_publish('nobody', '{}')", &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(notifications.load(Ordering::SeqCst), 0);

    // An idle relay registers, and the next event notifies it.
    let relay = env.spawn_relay(relay_config());
    env.wait_delivered(1, Duration::from_secs(10)).await;
    wait_registered(&env, 1, "the idle relay never registered").await;
    env.client
        .execute("SELECT outbox_publish('wake', '{}')", &[])
        .await
        .unwrap();
    env.wait_delivered(2, Duration::from_secs(5)).await;
    assert!(
        notifications.load(Ordering::SeqCst) >= 1,
        "the waiting relay was notified"
    );

    // Under sustained load (4 producers committing as fast as they can) the relay is busy
    // and unregistered: producers stop notifying.
    let before = notifications.load(Ordering::SeqCst);
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let url = env.database_url.clone();
            tokio::spawn(async move {
                let client = crate::harness::connect(&url).await;
                let started = Instant::now();
                let mut commits = 0;
                while started.elapsed() < Duration::from_millis(1500) {
                    client
                        .execute("SELECT outbox_publish('load', '{}')", &[])
                        .await
                        .unwrap();
                    commits += 1;
                }
                commits
            })
        })
        .collect();
    let mut commits = 0;
    for p in producers {
        commits += p.await.unwrap();
    }
    env.wait_delivered(2 + commits, Duration::from_secs(10))
        .await;
    let during = notifications.load(Ordering::SeqCst) - before;
    relay.stop().await;
    eprintln!("FIGURES notify: {commits} producer commits under load sent {during} notifications");
    assert!(
        during * 10 <= commits,
        "{during} notifications for {commits} commits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_notification_the_fallback_timer_delivers() {
    let env = TestEnv::new("fallback").await;
    let poll = Duration::from_millis(1500);
    let relay = env.spawn_relay(RelayConfig {
        poll_interval: poll,
        ..relay_config()
    });
    // The listener wakes the relay once it is connected: let that claim pass first, or it
    // would find the event below before the timer does.
    relay.wait_listening().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_registered(&env, 1, "the idle relay never registered").await;
    // Lose the notification: the relay still believes it is registered, so only the timer
    // can find this event.
    env.client
        .batch_execute("DELETE FROM event_log_waiting")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let committed = Instant::now();
    env.client
        .execute("SELECT outbox_publish('unnotified', '{}')", &[])
        .await
        .unwrap();
    env.wait_delivered(1, poll + Duration::from_secs(2)).await;
    let waited = committed.elapsed();
    relay.stop().await;
    assert!(
        waited >= Duration::from_millis(300),
        "delivered after {waited:?}: it was not the timer"
    );
    assert!(
        waited <= poll + Duration::from_millis(1000),
        "waited {waited:?}, longer than the fallback interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_relay_leaves_no_registration_behind() {
    let env = TestEnv::new("deregister").await;
    let relay = env.spawn_relay(relay_config());
    wait_registered(&env, 1, "the idle relay never registered").await;
    relay.stop().await;
    assert_eq!(
        registered(&env).await,
        0,
        "producers would keep notifying a stopped relay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_of_dead_relays_are_forgotten() {
    let env = TestEnv::new("dead_relay").await;
    // A relay that crashed while idle left its registration: producers would notify nobody.
    env.client
        .batch_execute("INSERT INTO event_log_waiting (relay) VALUES ('0000000000dead00')")
        .await
        .unwrap();
    let relay = env.spawn_relay(relay_config());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let dead: i64 = env
            .client
            .query_one(
                "SELECT count(*) FROM event_log_waiting WHERE relay = '0000000000dead00'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if dead == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener did not forget the dead relay"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_relay_stops_producers_notifying_until_it_delivers_again() {
    let clickhouse = PrivateClickHouse::start("withdraw");
    let env = TestEnv::with_clickhouse("withdraw", &clickhouse.url).await;
    let (notifications, _listener) = count_notifications(&env).await;
    let relay = env.spawn_relay(relay_config());
    wait_registered(&env, 1, "the idle relay never registered").await;

    // ClickHouse goes down; the next event wakes the relay, whose batch fails and rolls
    // back, deregistration included. Its retry withdraws the registration on its own.
    clickhouse.stop();
    env.client
        .execute("SELECT outbox_publish('outage', '{}')", &[])
        .await
        .unwrap();
    crate::harness::wait_for_failed_batches(&relay.stats, 1, "the relay never tried").await;
    wait_registered(&env, 0, "a failing relay stayed registered").await;

    // For the rest of the outage producers commit without notifying.
    let before = notifications.load(Ordering::SeqCst);
    for _ in 0..20 {
        env.client
            .execute("SELECT outbox_publish('outage', '{}')", &[])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        notifications.load(Ordering::SeqCst) - before,
        0,
        "producers notified a relay that cannot deliver"
    );
    assert_eq!(env.pending().await, 21, "nothing left PostgreSQL");

    // Back: everything is delivered, and the idle relay registers again.
    clickhouse.restart();
    env.wait_delivered(21, Duration::from_secs(30)).await;
    wait_registered(&env, 1, "the recovered relay did not register again").await;
    relay.stop().await;
}
