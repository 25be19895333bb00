//! Backfill against the sandbox helpdesk, the real RabbitMQ and both stores: the window's events
//! once each, a run that failed or was stopped resumes where it stood, a finished one is not
//! walked again, rate limits are waited out, and `--kind created` keeps to created tickets.

use std::time::Duration;

use deskpilot::{
    events::{EventKind, EventSource, TicketEvent},
    ingest::backfill::{
        Backfill, BackfillKind, BackfillOutcome, BackfillProgress, BackfillSettings, BackfillSpec,
        ProgressSink,
    },
    ticketing::{DynTicketReader, Ticket, TicketingError},
};
use time::{OffsetDateTime, macros::datetime};
use tokio_util::sync::CancellationToken;

use crate::{
    helpers::*,
    ingest_poll::{CONN, Flaky, Rig, counts, summary},
};

const SINCE: OffsetDateTime = datetime!(2026-11-10 00:00 UTC);
const UNTIL: OffsetDateTime = datetime!(2026-11-20 00:00 UTC);

fn spec(kind: BackfillKind, until: Option<OffsetDateTime>) -> BackfillSpec {
    BackfillSpec { connection_id: CONN.into(), since: SINCE, until, kind }
}

fn backfill(rig: &Rig, reader: DynTicketReader, holder: &str) -> Backfill {
    let settings = BackfillSettings {
        page_size: 5,
        first_pause: Duration::from_millis(10),
        ..BackfillSettings::default()
    };
    Backfill::new(reader, rig.store.clone(), rig.publisher.clone(), settings, holder)
}

/// What a backfill of `spec` should publish for the helpdesk's `tickets`.
fn expected(tickets: &[Ticket], spec: &BackfillSpec) -> Vec<TicketEvent> {
    let within = |t: OffsetDateTime| t >= spec.since && spec.until.is_none_or(|u| t <= u);
    tickets
        .iter()
        .filter_map(|t| {
            let (created, updated) = (t.created_at.unwrap(), t.updated_at.unwrap());
            let kind = match (spec.kind, within(created), within(updated)) {
                (_, true, _) if spec.kind == BackfillKind::Created || within(updated) => {
                    EventKind::TicketCreated
                }
                (BackfillKind::All, false, true) => EventKind::TicketUpdated,
                _ => return None,
            };
            Some(TicketEvent::observed(kind, CONN, t.id.clone().unwrap(), updated, EventSource::Backfill))
        })
        .collect()
}

/// Records what a run reports; cancels `stop` after `stop_after` pages, if set.
#[derive(Default)]
struct Recorder {
    pages: usize,
    pauses: Vec<(String, Duration)>,
    last: Option<BackfillProgress>,
    stop_after: Option<(usize, CancellationToken)>,
}

impl ProgressSink for Recorder {
    fn started(&mut self, progress: BackfillProgress) {
        self.last = Some(progress);
    }
    fn advanced(&mut self, progress: BackfillProgress) {
        self.pages += 1;
        self.last = Some(progress);
        if let Some((after, stop)) = &self.stop_after
            && self.pages >= *after
        {
            stop.cancel();
        }
    }
    fn pausing(&mut self, why: &str, pause: Duration) {
        self.pauses.push((why.to_owned(), pause));
    }
}

macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::TestStoreKind::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::TestStoreKind::Postgres).await
                }
            )+
        }
    };
}

on_both_stores!(
    a_failed_then_a_stopped_run_resume_and_the_window_is_published_once,
    rate_limits_are_waited_out,
    created_only_keeps_to_tickets_created_in_the_window,
);

async fn a_failed_then_a_stopped_run_resume_and_the_window_is_published_once(kind: TestStoreKind) {
    let rig = Rig::new(kind).await;
    let spec = spec(BackfillKind::All, Some(UNTIL));
    let want = expected(&rig.tickets().await, &spec);
    assert!(want.len() > 20 && want.iter().any(|e| e.kind == EventKind::TicketUpdated));

    // A helpdesk answering garbage on the third page: the run stops there, resumable.
    let broken = Flaky::new(rig.helpdesk.clone(), |call| {
        (call == 3).then(|| TicketingError::Invalid { detail: "unexpected end of JSON".into() })
    });
    let err =
        backfill(&rig, broken, "run-1").run(&spec, &mut (), &CancellationToken::new()).await.unwrap_err();
    assert!(err.to_string().contains("unexpected end of JSON"), "{err}");
    let mut published = rig.published().await;
    assert_eq!(published.len(), 5 + 4, "two pages, one ticket of each asked for again");

    // Run 2 resumes, and is stopped (Ctrl-C) after two more pages.
    let stop = CancellationToken::new();
    let mut recorder = Recorder { stop_after: Some((2, stop.clone())), ..Recorder::default() };
    let outcome =
        backfill(&rig, rig.helpdesk.clone(), "run-2").run(&spec, &mut recorder, &stop).await.unwrap();
    let BackfillOutcome::Stopped { tally, progress } = outcome else { panic!("{outcome:?}") };
    assert_eq!((tally.published, progress.published), (8, 17), "resumed after the 9 of run 1");
    published.extend(rig.published().await);

    // Run 3 finishes the window; a fourth finds it done.
    let mut recorder = Recorder::default();
    let outcome = backfill(&rig, rig.helpdesk.clone(), "run-3")
        .run(&spec, &mut recorder, &CancellationToken::new())
        .await
        .unwrap();
    let BackfillOutcome::Finished { progress, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(recorder.last, Some(progress));
    published.extend(rig.published().await);
    assert_eq!(summary(&published), summary(&want), "the window, nothing lost");
    assert!(counts(&published).values().all(|n| *n == 1), "nothing published twice");
    assert_eq!(progress.published as usize, want.len());
    let again = backfill(&rig, rig.helpdesk.clone(), "run-4")
        .run(&spec, &mut (), &CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(again, BackfillOutcome::AlreadyFinished(c) if c.published as usize == want.len()));
    assert_eq!(rig.published().await, Vec::new());
}

async fn rate_limits_are_waited_out(kind: TestStoreKind) {
    let rig = Rig::new(kind).await;
    let spec = spec(BackfillKind::All, Some(UNTIL));
    let limited = Flaky::new(rig.helpdesk.clone(), |call| {
        [2, 3]
            .contains(&call)
            .then_some(TicketingError::RateLimited { retry_after: Some(Duration::from_millis(20)) })
    });
    let mut recorder = Recorder::default();
    let outcome =
        backfill(&rig, limited, "run-1").run(&spec, &mut recorder, &CancellationToken::new()).await.unwrap();
    assert!(matches!(outcome, BackfillOutcome::Finished { .. }), "{outcome:?}");
    let pauses: Vec<Duration> = recorder.pauses.iter().map(|(_, d)| *d).collect();
    assert_eq!(pauses, [Duration::from_millis(20); 2], "the helpdesk's Retry-After, twice");
    assert!(recorder.pauses[0].0.contains("rate limited"), "{:?}", recorder.pauses);
    assert_eq!(summary(&rig.published().await), summary(&expected(&rig.tickets().await, &spec)));

    // A helpdesk that keeps refusing: the run gives up, resumable, after a bounded number of tries.
    let refusing =
        Flaky::new(rig.helpdesk.clone(), |_| Some(TicketingError::Transient { detail: "503".into() }));
    let other = BackfillSpec { since: UNTIL, ..spec };
    let mut recorder = Recorder::default();
    let err = backfill(&rig, refusing, "run-2")
        .run(&other, &mut recorder, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(recorder.pauses.len() as u32, deskpilot::ingest::backfill::MAX_PAGE_FAILURES - 1);
}

async fn created_only_keeps_to_tickets_created_in_the_window(kind: TestStoreKind) {
    let rig = Rig::new(kind).await;
    let spec = spec(BackfillKind::Created, Some(UNTIL));
    // Ticket 1057 was created in the window and changed after it: still included.
    let tickets = rig.tickets().await;
    let t1057 = tickets.iter().find(|t| t.id.as_deref() == Some("1057")).unwrap();
    assert!(t1057.created_at.unwrap() < UNTIL && t1057.updated_at.unwrap() > UNTIL);
    let outcome = backfill(&rig, rig.helpdesk.clone(), "run-1")
        .run(&spec, &mut (), &CancellationToken::new())
        .await
        .unwrap();
    let BackfillOutcome::Finished { tally, .. } = outcome else { panic!("{outcome:?}") };
    let published = rig.published().await;
    assert!(published.iter().all(|e| e.kind == EventKind::TicketCreated));
    assert!(published.iter().any(|e| e.ticket_id == "1057"));
    assert_eq!(summary(&published), summary(&expected(&tickets, &spec)));
    assert!(tally.out_of_scope > 0, "tickets created before the window were walked past");
}
