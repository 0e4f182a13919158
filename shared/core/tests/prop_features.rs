//! Property test of the feature builder: any valid series (random walks of any length, flat
//! stretches where every bar is equal, gaps) with any spec builds a matrix of finite numbers
//! with the columns the spec names, or refuses with a typed error (too few bars, an invalid
//! spec), never a panic; targets likewise.
#![allow(clippy::unwrap_used)]

use forexgpt_core::Candle;
use forexgpt_core::features::{FeatureError, build_features, build_targets};
use forexgpt_protocol::{FeatureSpec, MacdSpec, TargetSpec};
use proptest::prelude::*;

const CASES: u32 = 128;

/// Bars an hour or more apart, moving by up to ±0.5 % with flat runs (zero ranges).
fn series() -> impl Strategy<Value = Vec<Candle>> {
    prop::collection::vec((1_i64..=5, -50_i64..=50, 0_i64..=20, any::<bool>()), 1..400).prop_map(
        |steps| {
            let mut ts = 1_483_228_800;
            let mut close: f64 = 1.1;
            steps
                .into_iter()
                .map(|(gap, step, range, flat)| {
                    ts += gap * 3600;
                    let open = close;
                    if !flat {
                        close *= 1.0 + step as f64 * 1e-4;
                    }
                    let extra = if flat { 0.0 } else { range as f64 * 1e-5 };
                    Candle {
                        ts,
                        open,
                        high: open.max(close) + extra,
                        low: open.min(close) - extra,
                        close,
                        volume: 1.0,
                    }
                })
                .collect()
        },
    )
}

/// Specs the builder accepts when `valid`, and specs with any numbers otherwise.
fn spec(valid: bool) -> impl Strategy<Value = FeatureSpec> {
    let low = if valid { 2 } else { 0 };
    let periods = move || prop::collection::vec(low..60_u32, 0..3);
    let macd = if valid {
        (1_u32..20, 0_u32..20, 1_u32..15)
            .prop_map(|(fast, more, signal)| (fast, fast + 1 + more, signal))
            .boxed()
    } else {
        (0_u32..30, 0_u32..40, 0_u32..15).boxed()
    };
    (
        (low.min(1)..24_u32, any::<bool>(), any::<bool>()),
        (periods(), periods(), periods(), periods(), periods()),
        prop::collection::vec(macd, 0..2),
    )
        .prop_map(
            |((window, calendar, hour_of_day), (v, r, a, b, s), macd)| FeatureSpec {
                window,
                calendar,
                hour_of_day,
                volatility_periods: v,
                rsi_periods: r,
                atr_periods: a,
                bollinger_periods: b,
                stochastic_periods: s,
                macd: macd
                    .into_iter()
                    .map(|(fast, slow, signal)| MacdSpec { fast, slow, signal })
                    .collect(),
            },
        )
}

/// The columns a spec names, counted as the builder documents them.
fn expected_columns(s: &FeatureSpec) -> usize {
    let window = s.window as usize * 4 - 1;
    let calendar = if s.calendar {
        2 + if s.hour_of_day { 2 } else { 0 }
    } else {
        0
    };
    window
        + calendar
        + s.volatility_periods.len()
        + s.rsi_periods.len()
        + s.atr_periods.len()
        + s.bollinger_periods.len()
        + 2 * s.stochastic_periods.len()
        + 3 * s.macd.len()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn any_spec_is_built_or_refused_by_name(candles in series(), spec in spec(false)) {
        match build_features(&candles, &spec) {
            Err(e) => prop_assert!(!e.to_string().is_empty()),
            Ok(fm) => prop_assert!(fm.values.iter().all(|v| v.is_finite())),
        }
    }

    #[test]
    fn any_series_builds_finite_features_or_says_why(
        candles in series(),
        spec in spec(true),
        horizons in prop::collection::vec(0_u32..40, 0..4),
    ) {
        match build_features(&candles, &spec) {
            Err(FeatureError::InvalidSpec(message)) => prop_assert!(!message.is_empty()),
            Err(FeatureError::TooFewBars { bars, .. }) => prop_assert_eq!(bars, candles.len()),
            Ok(fm) => {
                prop_assert_eq!(fm.n_columns(), expected_columns(&spec));
                prop_assert_eq!(fm.columns.len(), fm.n_columns());
                prop_assert_eq!(fm.rows(), candles.len() - fm.warmup);
                prop_assert!(fm.ts.windows(2).all(|w| w[0] < w[1]));
                if let Some(bad) = fm.values.iter().position(|v| !v.is_finite()) {
                    let column = &fm.columns[bad % fm.n_columns()];
                    prop_assert!(false, "row {} column {}: {}", bad / fm.n_columns(), column, fm.values[bad]);
                }
                match build_targets(&fm, &TargetSpec { horizons: horizons.clone() }) {
                    Ok(t) => {
                        prop_assert!(t.values.iter().all(|v| v.is_finite()));
                        prop_assert_eq!(t.values.len(), t.rows * horizons.len());
                    }
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }
        }
    }
}
