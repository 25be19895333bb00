//! What the LLM may cost: daily and monthly budgets (UTC) over every connection and per
//! connection, checked before each ticket is decided.
//!
//! The spend is what the store recorded for the decisions of the current day and month, so it
//! survives restarts and is shared by every worker on one PostgreSQL store. It is read at most
//! every [`BudgetSettings::refresh`] and, in between, this process adds the cost of each decision
//! it makes: a budget spent by this worker switches its very next ticket to the policy, one spent
//! by another worker within a refresh.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use serde::Deserialize;
use time::{Date, OffsetDateTime, Time};

/// What the worker does with a ticket once a budget it falls under is spent, until the budget's
/// UTC day or month is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBudgetExhausted {
    /// Decide with the fallback rules (category, priority, tags; no draft, which waits for a
    /// person), at no LLM cost.
    #[default]
    DecideWithRules,
    /// Ask `[llm] fallback_model` instead of the configured model (and never the stronger one).
    SwitchToFallbackModel,
    /// Leave the ticket in the broker: it comes back through the retry tiers and is decided once
    /// the budget resets, without counting as a failed try.
    HoldUntilReset,
}

impl OnBudgetExhausted {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DecideWithRules => "decide_with_rules",
            Self::SwitchToFallbackModel => "switch_to_fallback_model",
            Self::HoldUntilReset => "hold_until_reset",
        }
    }
}

/// A daily and a monthly limit in US dollars; `None` = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Per UTC day.
    pub daily_usd: Option<f64>,
    /// Per UTC calendar month.
    pub monthly_usd: Option<f64>,
}

impl Limits {
    fn is_set(&self) -> bool {
        self.daily_usd.is_some() || self.monthly_usd.is_some()
    }
}

/// The budgets and what to do when one is spent.
#[derive(Debug, Clone, Default)]
pub struct BudgetSettings {
    /// Over every connection together.
    pub overall: Limits,
    /// Per connection id.
    pub connections: BTreeMap<String, Limits>,
    /// The policy once a budget is spent.
    pub on_exhausted: OnBudgetExhausted,
    /// How long the spend read from the store is trusted before it is read again.
    pub refresh: Duration,
}

impl BudgetSettings {
    /// Whether any budget is set.
    pub fn any(&self) -> bool {
        self.overall.is_set() || self.connections.values().any(Limits::is_set)
    }
}

/// US dollars spent so far in the current day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    /// Since the start of the UTC day.
    pub day_usd: f64,
    /// Since the start of the UTC month.
    pub month_usd: f64,
}

/// Where the spend of every worker is recorded (the store's decisions).
#[async_trait]
pub trait SpendSource: Send + Sync {
    /// The spend per connection id of decisions recorded since `day_start` and since
    /// `month_start`.
    async fn spent_since(
        &self,
        day_start: OffsetDateTime,
        month_start: OffsetDateTime,
    ) -> Result<BTreeMap<String, Spent>, Box<dyn std::error::Error + Send + Sync>>;
}

/// A budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// The UTC day.
    Daily,
    /// The UTC calendar month.
    Monthly,
}

impl Period {
    /// The metric label and config word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }
}

/// A spent budget: whose, which period, and when it resets.
#[derive(Debug, Clone, PartialEq)]
pub struct Exhausted {
    /// `None`: the overall budget; else the connection's own.
    pub connection: Option<String>,
    /// Daily or monthly.
    pub period: Period,
    /// The limit, US dollars.
    pub limit_usd: f64,
    /// Spent in the period, US dollars.
    pub spent_usd: f64,
    /// When the period ends.
    pub resets_at: OffsetDateTime,
}

impl Exhausted {
    /// How long until the budget resets, from `now`.
    pub fn resets_in(&self, now: OffsetDateTime) -> Duration {
        (self.resets_at - now).try_into().unwrap_or_default()
    }
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.connection {
            Some(c) => write!(f, "the {} LLM budget of connection `{c}`", self.period.as_str())?,
            None => write!(f, "the overall {} LLM budget", self.period.as_str())?,
        }
        write!(
            f,
            " ({}) is spent ({}) until {}",
            usd(self.limit_usd),
            usd(self.spent_usd),
            crate::ticketing::model::format_timestamp(self.resets_at)
        )
    }
}

/// US dollars as people write them: cents, or tenths of a cent below a dollar.
fn usd(v: f64) -> String {
    if v >= 1.0 { format!("${v:.2}") } else { format!("${v:.4}") }
}

/// The start of the UTC day and month of `now`, and when each ends.
fn periods(now: OffsetDateTime) -> [(OffsetDateTime, OffsetDateTime); 2] {
    let day = now.date();
    let day_start = day.with_time(Time::MIDNIGHT).assume_utc();
    let month_start = day.replace_day(1).unwrap_or(day).with_time(Time::MIDNIGHT).assume_utc();
    let next_month = match day.month() {
        time::Month::December => Date::from_calendar_date(day.year() + 1, time::Month::January, 1),
        m => Date::from_calendar_date(day.year(), m.next(), 1),
    }
    .map_or(month_start + time::Duration::days(31), |d| d.with_time(Time::MIDNIGHT).assume_utc());
    [(day_start, day_start + time::Duration::days(1)), (month_start, next_month)]
}

#[derive(Default)]
struct State {
    /// When the spend was last read, and the day it was read for.
    read: Option<(Instant, OffsetDateTime)>,
    spent: BTreeMap<String, Spent>,
    /// The budgets spent at the last check, to log a change once.
    exhausted: BTreeSet<(Option<String>, Period)>,
}

/// The budgets of one process, over the spend every worker recorded.
pub struct Budgets {
    settings: BudgetSettings,
    source: Arc<dyn SpendSource>,
    state: tokio::sync::Mutex<State>,
}

impl fmt::Debug for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budgets").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Budgets {
    /// Budgets over the spend `source` records.
    pub fn new(settings: BudgetSettings, source: Arc<dyn SpendSource>) -> Self {
        Self { settings, source, state: tokio::sync::Mutex::default() }
    }

    /// The policy once a budget is spent.
    pub fn on_exhausted(&self) -> OnBudgetExhausted {
        self.settings.on_exhausted
    }

    /// The first budget `connection` falls under that is spent now, if any.
    pub async fn check(&self, connection: &str) -> Option<Exhausted> {
        self.check_at(connection, OffsetDateTime::now_utc()).await
    }

    /// [`Budgets::check`] at `now` (tests move the clock).
    pub async fn check_at(&self, connection: &str, now: OffsetDateTime) -> Option<Exhausted> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state, now).await;
        let found = self.exhausted(&state, connection, now);
        self.report(&mut state, connection, now);
        found
    }

    /// Adds the cost of a decision this process just made to the spend, until the next read.
    pub async fn record(&self, connection: &str, cost_usd: f64) {
        if cost_usd <= 0.0 {
            return;
        }
        let mut state = self.state.lock().await;
        let spent = state.spent.entry(connection.to_owned()).or_default();
        spent.day_usd += cost_usd;
        spent.month_usd += cost_usd;
    }

    async fn refresh(&self, state: &mut State, now: OffsetDateTime) {
        let [(day_start, _), (month_start, _)] = periods(now);
        let fresh =
            state.read.is_some_and(|(at, day)| at.elapsed() < self.settings.refresh && day == day_start);
        if fresh {
            return;
        }
        match self.source.spent_since(day_start, month_start).await {
            Ok(spent) => {
                state.spent = spent;
                state.read = Some((Instant::now(), day_start));
            }
            // The figures of the last read (plus what this process added) stand meanwhile.
            Err(e) => tracing::warn!(error = %e, "could not read the LLM spend; using the last figures"),
        }
    }

    fn limits_of(&self, connection: Option<&str>) -> Limits {
        match connection {
            None => self.settings.overall,
            Some(c) => self.settings.connections.get(c).copied().unwrap_or_default(),
        }
    }

    fn spent_of(state: &State, connection: Option<&str>) -> Spent {
        match connection {
            Some(c) => state.spent.get(c).copied().unwrap_or_default(),
            None => state.spent.values().fold(Spent::default(), |a, s| Spent {
                day_usd: a.day_usd + s.day_usd,
                month_usd: a.month_usd + s.month_usd,
            }),
        }
    }

    fn exhausted(&self, state: &State, connection: &str, now: OffsetDateTime) -> Option<Exhausted> {
        let [(_, day_end), (_, month_end)] = periods(now);
        [Some(connection), None].into_iter().find_map(|scope| {
            let limits = self.limits_of(scope);
            let spent = Self::spent_of(state, scope);
            let checks = [
                (Period::Monthly, limits.monthly_usd, spent.month_usd, month_end),
                (Period::Daily, limits.daily_usd, spent.day_usd, day_end),
            ];
            checks.into_iter().find_map(|(period, limit, spent, resets_at)| {
                let limit = limit.filter(|l| spent >= *l)?;
                Some(Exhausted {
                    connection: scope.map(str::to_owned),
                    period,
                    limit_usd: limit,
                    spent_usd: spent,
                    resets_at,
                })
            })
        })
    }

    /// Sets the gauges of `connection`'s budgets and the overall ones, and logs a budget that
    /// became spent or reset since the last check: once, not once per ticket.
    fn report(&self, state: &mut State, connection: &str, now: OffsetDateTime) {
        let [(_, day_end), (_, month_end)] = periods(now);
        for scope in [Some(connection), None] {
            let limits = self.limits_of(scope);
            let spent = Self::spent_of(state, scope);
            let label = scope.unwrap_or("overall").to_owned();
            for (period, limit, spent, resets_at) in [
                (Period::Daily, limits.daily_usd, spent.day_usd, day_end),
                (Period::Monthly, limits.monthly_usd, spent.month_usd, month_end),
            ] {
                let Some(limit) = limit else { continue };
                let labels = [("scope", label.clone()), ("period", period.as_str().to_owned())];
                metrics::gauge!("deskpilot_llm_budget_spent_usd", &labels).set(spent);
                metrics::gauge!("deskpilot_llm_budget_usd", &labels).set(limit);
                let is_spent = spent >= limit;
                metrics::gauge!("deskpilot_llm_budget_exhausted", &labels).set(f64::from(u8::from(is_spent)));
                let key = (scope.map(str::to_owned), period);
                let what = Exhausted {
                    connection: key.0.clone(),
                    period,
                    limit_usd: limit,
                    spent_usd: spent,
                    resets_at,
                };
                if is_spent && state.exhausted.insert(key.clone()) {
                    tracing::warn!(
                        scope = %label, period = period.as_str(), limit_usd = limit, spent_usd = spent,
                        policy = self.settings.on_exhausted.as_str(),
                        "{what}; tickets it covers now follow on_budget_exhausted = {}",
                        self.settings.on_exhausted.as_str()
                    );
                } else if !is_spent && state.exhausted.remove(&key) {
                    tracing::info!(scope = %label, period = period.as_str(), "LLM budget available again");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use time::macros::datetime;

    use super::*;

    /// A store stand-in: the spend it returns, and how often it was read.
    #[derive(Default)]
    struct Recorded {
        spent: Mutex<BTreeMap<String, Spent>>,
        reads: Mutex<Vec<(OffsetDateTime, OffsetDateTime)>>,
    }

    #[async_trait]
    impl SpendSource for Recorded {
        async fn spent_since(
            &self,
            day_start: OffsetDateTime,
            month_start: OffsetDateTime,
        ) -> Result<BTreeMap<String, Spent>, Box<dyn std::error::Error + Send + Sync>> {
            self.reads.lock().unwrap().push((day_start, month_start));
            Ok(self.spent.lock().unwrap().clone())
        }
    }

    fn budgets(source: &Arc<Recorded>, overall: Limits, demo: Limits, refresh: Duration) -> Budgets {
        let settings = BudgetSettings {
            overall,
            connections: [("demo".to_owned(), demo)].into(),
            on_exhausted: OnBudgetExhausted::DecideWithRules,
            refresh,
        };
        Budgets::new(settings, source.clone())
    }

    #[test]
    fn periods_are_utc_days_and_calendar_months() {
        let [(day, day_end), (month, month_end)] = periods(datetime!(2026-12-31 23:59:59 UTC));
        assert_eq!((day, day_end), (datetime!(2026-12-31 0:00 UTC), datetime!(2027-01-01 0:00 UTC)));
        assert_eq!((month, month_end), (datetime!(2026-12-01 0:00 UTC), datetime!(2027-01-01 0:00 UTC)));
        let [_, (month, month_end)] = periods(datetime!(2028-02-29 12:00 UTC));
        assert_eq!((month, month_end), (datetime!(2028-02-01 0:00 UTC), datetime!(2028-03-01 0:00 UTC)));
    }

    #[tokio::test]
    async fn a_connection_s_own_budget_and_the_overall_one_are_both_checked() {
        let source = Arc::new(Recorded::default());
        *source.spent.lock().unwrap() = [
            ("demo".to_owned(), Spent { day_usd: 4.0, month_usd: 40.0 }),
            ("other".to_owned(), Spent { day_usd: 7.0, month_usd: 70.0 }),
        ]
        .into();
        let now = datetime!(2026-12-04 18:00 UTC);
        let own = Limits { daily_usd: Some(5.0), monthly_usd: None };
        let b = budgets(
            &source,
            Limits { daily_usd: None, monthly_usd: Some(200.0) },
            own,
            Duration::from_secs(3600),
        );
        assert_eq!(b.check_at("demo", now).await, None, "4 of 5 today; 110 of 200 this month");

        // This process's own decision counts at once, without a read.
        b.record("demo", 1.5).await;
        let spent = b.check_at("demo", now).await.expect("5.5 of 5 today");
        assert_eq!(
            spent,
            Exhausted {
                connection: Some("demo".into()),
                period: Period::Daily,
                limit_usd: 5.0,
                spent_usd: 5.5,
                resets_at: datetime!(2026-12-05 0:00 UTC),
            }
        );
        assert_eq!(spent.resets_in(now), Duration::from_secs(6 * 3600));
        assert_eq!(b.check_at("other", now).await, None, "`other` has no budget of its own");

        b.record("other", 90.0).await;
        let spent = b.check_at("other", now).await.expect("201.5 of 200 this month");
        assert_eq!((spent.connection.as_deref(), spent.period), (None, Period::Monthly));
        assert_eq!(spent.resets_at, datetime!(2027-01-01 0:00 UTC));
        assert_eq!(source.reads.lock().unwrap().len(), 1, "read once within the refresh");
        assert!(
            spent
                .to_string()
                .starts_with("the overall monthly LLM budget ($200.00) is spent ($201.50) until 2027-01-01"),
            "{spent}"
        );
    }

    #[tokio::test]
    async fn the_spend_is_read_again_after_the_refresh_and_at_a_new_day() {
        let source = Arc::new(Recorded::default());
        *source.spent.lock().unwrap() = [("demo".to_owned(), Spent { day_usd: 6.0, month_usd: 6.0 })].into();
        let limits = Limits { daily_usd: Some(5.0), monthly_usd: None };
        let b = budgets(&source, Limits::default(), limits, Duration::from_secs(3600));
        assert!(b.check_at("demo", datetime!(2026-12-04 23:59 UTC)).await.is_some());
        // Another worker's figures: the new day's read has none of yesterday's.
        *source.spent.lock().unwrap() = [("demo".to_owned(), Spent { day_usd: 0.0, month_usd: 6.0 })].into();
        assert_eq!(b.check_at("demo", datetime!(2026-12-05 0:01 UTC)).await, None, "a new day, read again");
        let reads = source.reads.lock().unwrap().clone();
        assert_eq!(
            reads,
            [
                (datetime!(2026-12-04 0:00 UTC), datetime!(2026-12-01 0:00 UTC)),
                (datetime!(2026-12-05 0:00 UTC), datetime!(2026-12-01 0:00 UTC)),
            ]
        );

        let b = budgets(&source, Limits::default(), limits, Duration::ZERO);
        b.check_at("demo", datetime!(2026-12-05 0:01 UTC)).await;
        b.record("demo", 9.0).await;
        assert_eq!(
            b.check_at("demo", datetime!(2026-12-05 0:01 UTC)).await,
            None,
            "the store's figures replace ours"
        );
        assert_eq!(source.reads.lock().unwrap().len(), 4);
    }

    /// Counts the warnings logged while it is the default subscriber.
    #[derive(Clone, Default)]
    struct Warnings(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            if *event.metadata().level() == tracing::Level::WARN {
                let mut message = String::new();
                event.record(&mut |field: &tracing::field::Field, value: &dyn fmt::Debug| {
                    if field.name() == "message" {
                        message = format!("{value:?}");
                    }
                });
                self.0.lock().unwrap().push(message);
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_budget_that_becomes_spent_is_logged_once_not_once_per_ticket() {
        use tracing_subscriber::layer::SubscriberExt;
        let warnings = Warnings::default();
        let _default =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
        let source = Arc::new(Recorded::default());
        let b = budgets(
            &source,
            Limits::default(),
            Limits { daily_usd: Some(1.0), monthly_usd: None },
            Duration::from_secs(3600),
        );
        let now = datetime!(2026-12-04 18:00 UTC);
        assert!(b.check_at("demo", now).await.is_none());
        b.record("demo", 1.2).await;
        for _ in 0..5 {
            assert!(b.check_at("demo", now).await.is_some());
        }
        let logged = warnings.0.lock().unwrap().clone();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(
            logged[0].contains("the daily LLM budget of connection `demo` ($1.00) is spent ($1.20)")
                && logged[0].contains("now follow on_budget_exhausted = decide_with_rules"),
            "{logged:?}"
        );
    }
}
