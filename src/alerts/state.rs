//! The alert instance state machine: how one alert instance (one rule and
//! one label set) moves between inactive, pending and firing as evaluations
//! come in, following Prometheus's rules for `for` and `keep_firing_for`.
//! It is made of pure functions over plain values, with no clock and no
//! I/O, so that live evaluation and backtesting ([`replay`]) share exactly
//! the same logic and can be tested with hand-written timelines.
//!
//! An evaluation is `Some(value)` when the rule's condition held (with the
//! value that made it hold) and `None` when it did not hold or the series
//! had no data; both count as "false".

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Where an alert instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition does not hold (or has not held for long enough to matter).
    #[default]
    Inactive,
    /// The condition holds but has not yet held for the rule's `for` duration.
    Pending,
    /// The condition has held for `for`, or is kept firing by `keep_firing_for`.
    Firing,
}

impl AlertState {
    /// The lower-case name: `"inactive"`, `"pending"` or `"firing"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string names no [`AlertState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseAlertStateError {
    /// The string that was not recognised.
    pub input: String,
}

impl fmt::Display for ParseAlertStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown alert state '{}'; expected inactive, pending or firing",
            self.input
        )
    }
}

impl std::error::Error for ParseAlertStateError {}

impl FromStr for AlertState {
    type Err = ParseAlertStateError;

    /// Accepts exactly the names returned by [`AlertState::as_str`].
    fn from_str(s: &str) -> Result<AlertState, ParseAlertStateError> {
        match s {
            "inactive" => Ok(AlertState::Inactive),
            "pending" => Ok(AlertState::Pending),
            "firing" => Ok(AlertState::Firing),
            _ => Err(ParseAlertStateError {
                input: s.to_string(),
            }),
        }
    }
}

/// The remembered state of one alert instance between evaluations.
///
/// After a resolution the instance is inactive but keeps `active_at`,
/// `fired_at`, `resolved_at` and `value` of the episode that just ended;
/// the next true evaluation starts a new episode and clears them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Instance {
    /// Current state.
    pub state: AlertState,
    /// When the condition started holding in the current (or last) episode.
    pub active_at: Option<DateTime<Utc>>,
    /// When the instance started firing in the current (or last) episode.
    pub fired_at: Option<DateTime<Utc>>,
    /// When the last firing episode was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the condition stopped holding while firing with `keep_firing_for`.
    pub keep_firing_since: Option<DateTime<Utc>>,
    /// The latest value that made the condition true.
    pub value: Option<f64>,
}

/// A rule's timing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Timing {
    /// How long the condition must hold before pending becomes firing.
    pub for_secs: u64,
    /// How long a firing instance keeps firing after the condition stops holding.
    pub keep_firing_for_secs: u64,
}

/// A change of state, reported by [`step`] and [`replay`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// State before the evaluation.
    pub from: AlertState,
    /// State after the evaluation.
    pub to: AlertState,
    /// Time of the evaluation that caused the change.
    pub at: DateTime<Utc>,
    /// The instance's value after the change: the latest value that made the
    /// condition true (for a move to inactive, the last one before it).
    pub value: Option<f64>,
}

/// Applies one evaluation at `now` to an instance and returns its new state,
/// with the transition when the state changed.
///
/// `value_if_true` is `Some(value)` when the condition held and `None` when
/// it did not or the series had no data. Evaluations are expected in
/// chronological order; a clock that goes backwards never completes a
/// `for` or `keep_firing_for` wait.
pub fn step(
    prev: &Instance,
    value_if_true: Option<f64>,
    now: DateTime<Utc>,
    timing: Timing,
) -> (Instance, Option<Transition>) {
    let next = match value_if_true {
        Some(value) => when_true(prev, value, now, timing),
        None => when_false(prev, now, timing),
    };
    let transition = (next.state != prev.state).then_some(Transition {
        from: prev.state,
        to: next.state,
        at: now,
        value: next.value,
    });
    (next, transition)
}

/// Folds [`step`] over evaluations in chronological order, starting from an
/// inactive instance, and returns every transition; used for backtesting.
pub fn replay(evaluations: &[(DateTime<Utc>, Option<f64>)], timing: Timing) -> Vec<Transition> {
    let mut instance = Instance::default();
    let mut transitions = Vec::new();
    for &(at, value_if_true) in evaluations {
        let (next, transition) = step(&instance, value_if_true, at, timing);
        transitions.extend(transition);
        instance = next;
    }
    transitions
}

/// Ends an instance's episode at `now` regardless of timers (its rule was
/// disabled or deleted): pending and firing become inactive, a firing
/// instance records its resolution, and an inactive one is unchanged.
pub fn deactivate(prev: &Instance, now: DateTime<Utc>) -> (Instance, Option<Transition>) {
    let next = match prev.state {
        AlertState::Inactive => prev.clone(),
        AlertState::Pending => Instance {
            value: prev.value,
            ..Instance::default()
        },
        AlertState::Firing => Instance {
            state: AlertState::Inactive,
            resolved_at: Some(now),
            keep_firing_since: None,
            ..prev.clone()
        },
    };
    let transition = (next.state != prev.state).then_some(Transition {
        from: prev.state,
        to: next.state,
        at: now,
        value: next.value,
    });
    (next, transition)
}

fn when_true(prev: &Instance, value: f64, now: DateTime<Utc>, timing: Timing) -> Instance {
    match prev.state {
        AlertState::Inactive => Instance {
            state: if timing.for_secs == 0 {
                AlertState::Firing
            } else {
                AlertState::Pending
            },
            active_at: Some(now),
            fired_at: (timing.for_secs == 0).then_some(now),
            resolved_at: None,
            keep_firing_since: None,
            value: Some(value),
        },
        AlertState::Pending => {
            let active_at = prev.active_at.unwrap_or(now);
            let fires = held_for(active_at, now, timing.for_secs);
            Instance {
                state: if fires {
                    AlertState::Firing
                } else {
                    AlertState::Pending
                },
                active_at: Some(active_at),
                fired_at: fires.then_some(now),
                resolved_at: None,
                keep_firing_since: None,
                value: Some(value),
            }
        }
        AlertState::Firing => Instance {
            state: AlertState::Firing,
            active_at: prev.active_at.or(Some(now)),
            fired_at: prev.fired_at.or(Some(now)),
            resolved_at: None,
            keep_firing_since: None,
            value: Some(value),
        },
    }
}

fn when_false(prev: &Instance, now: DateTime<Utc>, timing: Timing) -> Instance {
    match prev.state {
        AlertState::Inactive => prev.clone(),
        AlertState::Pending => Instance {
            value: prev.value,
            ..Instance::default()
        },
        AlertState::Firing => {
            let since = prev.keep_firing_since.unwrap_or(now);
            if timing.keep_firing_for_secs > 0 && !held_for(since, now, timing.keep_firing_for_secs)
            {
                Instance {
                    keep_firing_since: Some(since),
                    ..prev.clone()
                }
            } else {
                Instance {
                    state: AlertState::Inactive,
                    resolved_at: Some(now),
                    keep_firing_since: None,
                    ..prev.clone()
                }
            }
        }
    }
}

/// Whether at least `secs` seconds have passed from `since` to `now`.
fn held_for(since: DateTime<Utc>, now: DateTime<Utc>, secs: u64) -> bool {
    let needed = i64::try_from(secs).ok().and_then(TimeDelta::try_seconds);
    match needed {
        Some(needed) => now.signed_duration_since(since) >= needed,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: i64 = 1_700_000_000;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(BASE + secs, 0).expect("valid timestamp")
    }

    fn timing(for_secs: u64, keep_firing_for_secs: u64) -> Timing {
        Timing {
            for_secs,
            keep_firing_for_secs,
        }
    }

    /// Runs the evaluations and returns the instance and transition after each.
    fn run(
        evaluations: &[(i64, Option<f64>)],
        timing: Timing,
    ) -> Vec<(Instance, Option<Transition>)> {
        let mut instance = Instance::default();
        evaluations
            .iter()
            .map(|&(secs, value)| {
                let (next, transition) = step(&instance, value, at(secs), timing);
                instance = next.clone();
                (next, transition)
            })
            .collect()
    }

    fn states(steps: &[(Instance, Option<Transition>)]) -> Vec<AlertState> {
        steps.iter().map(|(i, _)| i.state).collect()
    }

    use AlertState::{Firing, Inactive, Pending};

    #[test]
    fn a_new_instance_is_inactive_with_nothing_recorded() {
        let i = Instance::default();
        assert_eq!(i.state, Inactive);
        assert_eq!(
            (
                i.active_at,
                i.fired_at,
                i.resolved_at,
                i.keep_firing_since,
                i.value
            ),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn with_no_for_duration_the_first_true_evaluation_fires() {
        let steps = run(&[(0, Some(3.0))], timing(0, 0));
        let (instance, transition) = &steps[0];
        assert_eq!(instance.state, Firing);
        assert_eq!(instance.active_at, Some(at(0)));
        assert_eq!(instance.fired_at, Some(at(0)));
        assert_eq!(instance.value, Some(3.0));
        assert_eq!(
            *transition,
            Some(Transition {
                from: Inactive,
                to: Firing,
                at: at(0),
                value: Some(3.0)
            })
        );
    }

    #[test]
    fn an_alert_is_pending_until_the_condition_has_held_for_the_for_duration() {
        let steps = run(
            &[
                (0, Some(1.0)),
                (30, Some(2.0)),
                (59, Some(3.0)),
                (60, Some(4.0)),
            ],
            timing(60, 0),
        );
        assert_eq!(states(&steps), vec![Pending, Pending, Pending, Firing]);
        let (fired, transition) = &steps[3];
        assert_eq!(fired.active_at, Some(at(0)));
        assert_eq!(fired.fired_at, Some(at(60)));
        assert_eq!(transition.map(|t| (t.from, t.to)), Some((Pending, Firing)));
        assert_eq!(steps[1].0.fired_at, None);
    }

    #[test]
    fn a_pending_alert_does_not_fire_a_millisecond_before_the_for_duration() {
        let pending = Instance {
            state: Pending,
            active_at: Some(at(0)),
            value: Some(1.0),
            ..Instance::default()
        };
        let almost = at(60) - TimeDelta::milliseconds(1);
        let (next, transition) = step(&pending, Some(1.0), almost, timing(60, 0));
        assert_eq!(next.state, Pending);
        assert_eq!(transition, None);
    }

    #[test]
    fn a_false_evaluation_while_pending_returns_to_inactive_and_restarts_the_timer() {
        let steps = run(
            &[
                (0, Some(1.0)),
                (30, Some(1.0)),
                (45, None),
                (50, Some(2.0)),
                (100, Some(2.0)),
                (110, Some(2.0)),
            ],
            timing(60, 0),
        );
        assert_eq!(
            states(&steps),
            vec![Pending, Pending, Inactive, Pending, Pending, Firing]
        );
        assert_eq!(steps[3].0.active_at, Some(at(50)));
        assert_eq!(steps[5].0.fired_at, Some(at(110)));
    }

    #[test]
    fn a_pending_alert_that_goes_inactive_records_no_resolution() {
        let steps = run(&[(0, Some(5.0)), (10, None)], timing(60, 0));
        let (instance, transition) = &steps[1];
        assert_eq!(instance.state, Inactive);
        assert_eq!(instance.resolved_at, None);
        assert_eq!(instance.active_at, None);
        assert_eq!(
            *transition,
            Some(Transition {
                from: Pending,
                to: Inactive,
                at: at(10),
                value: Some(5.0)
            })
        );
    }

    #[test]
    fn without_keep_firing_for_a_false_evaluation_resolves_a_firing_alert_at_once() {
        let steps = run(
            &[(0, Some(1.0)), (60, Some(2.0)), (120, None)],
            timing(0, 0),
        );
        assert_eq!(states(&steps), vec![Firing, Firing, Inactive]);
        let (resolved, transition) = &steps[2];
        assert_eq!(resolved.resolved_at, Some(at(120)));
        assert_eq!(resolved.fired_at, Some(at(0)));
        assert_eq!(resolved.value, Some(2.0));
        assert_eq!(transition.map(|t| (t.from, t.to)), Some((Firing, Inactive)));
    }

    #[test]
    fn keep_firing_for_keeps_an_alert_firing_then_resolves_it() {
        let steps = run(
            &[
                (0, Some(7.0)),
                (60, None),
                (120, None),
                (179, None),
                (180, None),
            ],
            timing(0, 120),
        );
        assert_eq!(
            states(&steps),
            vec![Firing, Firing, Firing, Firing, Inactive]
        );
        assert_eq!(steps[1].0.keep_firing_since, Some(at(60)));
        assert_eq!(steps[3].0.keep_firing_since, Some(at(60)));
        assert_eq!(steps[3].0.value, Some(7.0), "value kept while keep-firing");
        assert_eq!(steps[3].0.resolved_at, None);
        let (resolved, transition) = &steps[4];
        assert_eq!(resolved.resolved_at, Some(at(180)));
        assert_eq!(resolved.keep_firing_since, None);
        assert_eq!(
            transition.map(|t| (t.to, t.value)),
            Some((Inactive, Some(7.0)))
        );
    }

    #[test]
    fn a_true_evaluation_during_keep_firing_cancels_the_timer() {
        let steps = run(
            &[
                (0, Some(1.0)),
                (60, None),
                (90, Some(9.0)),
                (150, None),
                (240, None),
                (270, None),
            ],
            timing(0, 120),
        );
        assert_eq!(
            states(&steps),
            vec![Firing, Firing, Firing, Firing, Firing, Inactive]
        );
        assert_eq!(steps[2].0.keep_firing_since, None);
        assert_eq!(steps[2].0.value, Some(9.0));
        assert_eq!(steps[3].0.keep_firing_since, Some(at(150)));
        assert_eq!(steps[5].0.resolved_at, Some(at(270)));
        assert_eq!(steps[5].0.fired_at, Some(at(0)));
    }

    #[test]
    fn a_series_with_no_data_behaves_like_a_false_evaluation() {
        // Both a false condition and missing data are passed as `None`.
        let pending = run(&[(0, Some(1.0)), (10, None)], timing(60, 0));
        assert_eq!(states(&pending), vec![Pending, Inactive]);
        let firing = run(&[(0, Some(1.0)), (10, None), (25, None)], timing(0, 15));
        assert_eq!(states(&firing), vec![Firing, Firing, Inactive]);
        assert_eq!(firing[2].0.resolved_at, Some(at(25)));
    }

    #[test]
    fn a_firing_alert_keeps_its_start_times_and_reports_the_latest_true_value() {
        let steps = run(
            &[
                (0, Some(1.0)),
                (60, Some(2.0)),
                (120, Some(3.0)),
                (180, Some(2.5)),
            ],
            timing(60, 0),
        );
        let last = &steps[3].0;
        assert_eq!(last.state, Firing);
        assert_eq!(last.active_at, Some(at(0)));
        assert_eq!(last.fired_at, Some(at(60)));
        assert_eq!(last.value, Some(2.5));
    }

    #[test]
    fn an_alert_that_fires_again_after_resolving_starts_a_fresh_episode() {
        let steps = run(
            &[(0, Some(1.0)), (60, None), (120, Some(4.0))],
            timing(0, 0),
        );
        let again = &steps[2].0;
        assert_eq!(again.state, Firing);
        assert_eq!(again.active_at, Some(at(120)));
        assert_eq!(again.fired_at, Some(at(120)));
        assert_eq!(again.resolved_at, None);
    }

    #[test]
    fn false_evaluations_leave_an_inactive_instance_unchanged() {
        let resolved = Instance {
            state: Inactive,
            active_at: Some(at(0)),
            fired_at: Some(at(0)),
            resolved_at: Some(at(60)),
            keep_firing_since: None,
            value: Some(1.0),
        };
        let (next, transition) = step(&resolved, None, at(120), timing(0, 0));
        assert_eq!(next, resolved);
        assert_eq!(transition, None);
    }

    #[test]
    fn a_clock_that_goes_backwards_does_not_complete_the_for_wait() {
        let steps = run(&[(100, Some(1.0)), (40, Some(1.0))], timing(30, 0));
        assert_eq!(states(&steps), vec![Pending, Pending]);
    }

    #[test]
    fn replay_equals_successive_steps() {
        let evaluations: Vec<(i64, Option<f64>)> = vec![
            (0, Some(1.0)),
            (15, Some(2.0)),
            (30, None),
            (45, Some(3.0)),
            (60, Some(3.0)),
            (75, Some(3.0)),
            (90, None),
            (105, None),
            (120, Some(4.0)),
            (135, None),
            (150, None),
            (165, None),
        ];
        let timing = timing(30, 20);
        let by_steps: Vec<Transition> = run(&evaluations, timing)
            .into_iter()
            .filter_map(|(_, t)| t)
            .collect();
        let timed: Vec<(DateTime<Utc>, Option<f64>)> =
            evaluations.iter().map(|&(s, v)| (at(s), v)).collect();
        let replayed = replay(&timed, timing);
        assert_eq!(replayed, by_steps);
        let path: Vec<(AlertState, AlertState)> = replayed.iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(
            path,
            vec![
                (Inactive, Pending),
                (Pending, Inactive),
                (Inactive, Pending),
                (Pending, Firing),
                (Firing, Inactive),
            ]
        );
    }

    #[test]
    fn replay_of_no_evaluations_reports_no_transitions() {
        assert!(replay(&[], timing(0, 0)).is_empty());
    }

    #[test]
    fn exactly_one_transition_is_reported_per_state_change_and_none_otherwise() {
        // A deterministic pseudo-random walk over many timings.
        let mut seed: u64 = 0x5eed;
        let mut next_random = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            seed >> 33
        };
        let mut changes_seen = 0;
        for (for_secs, keep_secs) in [(0, 0), (0, 45), (30, 0), (60, 90), (15, 15)] {
            let timing = timing(for_secs, keep_secs);
            let mut instance = Instance::default();
            let mut now = 0;
            for _ in 0..500 {
                now += 1 + (next_random() % 20) as i64;
                let value = (next_random() % 3 != 0).then_some((next_random() % 100) as f64);
                let (next, transition) = step(&instance, value, at(now), timing);
                if next.state == instance.state {
                    assert_eq!(transition, None, "no change at {now} under {timing:?}");
                } else {
                    changes_seen += 1;
                    assert_eq!(
                        transition,
                        Some(Transition {
                            from: instance.state,
                            to: next.state,
                            at: at(now),
                            value: next.value,
                        })
                    );
                }
                instance = next;
            }
        }
        assert!(changes_seen > 100, "the walk exercises many changes");
    }

    #[test]
    fn deactivating_ends_an_episode_whatever_the_timers_say() {
        let firing = run(&[(0, Some(2.0)), (10, None)], timing(0, 600));
        let kept = &firing[1].0;
        assert_eq!(kept.state, Firing, "kept firing by keep_firing_for");
        let (ended, transition) = deactivate(kept, at(20));
        assert_eq!(ended.state, Inactive);
        assert_eq!(ended.resolved_at, Some(at(20)));
        assert_eq!(ended.fired_at, Some(at(0)));
        assert_eq!(ended.keep_firing_since, None);
        assert_eq!(
            transition,
            Some(Transition {
                from: Firing,
                to: Inactive,
                at: at(20),
                value: Some(2.0)
            })
        );
        let pending = run(&[(0, Some(1.0))], timing(60, 0));
        let (ended, transition) = deactivate(&pending[0].0, at(5));
        assert_eq!((ended.state, ended.resolved_at), (Inactive, None));
        assert_eq!(
            transition.map(|t| (t.from, t.to)),
            Some((Pending, Inactive))
        );
        let (same, none) = deactivate(&ended, at(6));
        assert_eq!((same, none), (ended, None));
    }

    #[test]
    fn alert_states_convert_to_and_from_their_names() {
        for state in [Inactive, Pending, Firing] {
            assert_eq!(state.as_str().parse::<AlertState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
            let json = serde_json::to_string(&state).expect("serialize");
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(serde_json::from_str::<AlertState>(&json).ok(), Some(state));
        }
        let e = "Firing".parse::<AlertState>().expect_err("case matters");
        assert_eq!(e.input, "Firing");
        assert!(
            e.to_string()
                .contains("expected inactive, pending or firing")
        );
    }

    #[test]
    fn an_instance_survives_a_serde_round_trip() {
        let steps = run(&[(0, Some(1.5)), (10, None)], timing(0, 60));
        let instance = &steps[1].0;
        let json = serde_json::to_string(instance).expect("serialize");
        let back: Instance = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(&back, instance);
        assert_eq!(back.keep_firing_since, Some(at(10)));
    }
}
