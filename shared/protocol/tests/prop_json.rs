//! Property test: every request the front ends send, and the model records they read back,
//! survive JSON unchanged (any finite float, any size, every variant), so the app, the CLI's
//! `--json` and the model files agree on what was asked and what was trained.
#![allow(clippy::unwrap_used)]

use forexgpt_protocol::{
    Activation, BacktestRequest, Combine, DevicePreference, DeviceRequest, EncoderSpec,
    FeatureSpec, ForestSpec, MacdSpec, MaxFeatures, ModelConfig, ModelSelection, NeuralEncoderSpec,
    RegressorSpec, SplitSpec, TargetSpec, Timeframe, TrainRequest,
};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

const CASES: u32 = 512;

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        -1e3..1e3_f64,
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
    ]
}

fn timeframe() -> impl Strategy<Value = Timeframe> {
    prop::sample::select(Timeframe::ALL.to_vec())
}

fn device() -> impl Strategy<Value = DeviceRequest> {
    let preference = prop_oneof![
        Just(DevicePreference::Auto),
        Just(DevicePreference::Cpu),
        prop::option::of(0_usize..8).prop_map(DevicePreference::Cuda),
        prop::option::of(0_usize..8).prop_map(DevicePreference::Wgpu),
    ];
    (preference, any::<bool>()).prop_map(|(preference, gpu_if_available)| DeviceRequest {
        preference,
        gpu_if_available,
    })
}

fn periods() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(2_u32..500, 0..4)
}

fn features() -> impl Strategy<Value = FeatureSpec> {
    (
        (1_u32..64, any::<bool>(), any::<bool>()),
        (periods(), periods(), periods(), periods(), periods()),
        prop::collection::vec((1_u32..50, 1_u32..50, 1_u32..50), 0..3),
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

fn network() -> impl Strategy<Value = NeuralEncoderSpec> {
    (
        (prop::collection::vec(1_usize..512, 0..4), 1_usize..64),
        prop::sample::select(Activation::ALL.to_vec()),
        (finite(), 1_usize..1000, 1_usize..4096, finite()),
        (prop::option::of(1_usize..100), any::<u64>()),
    )
        .prop_map(
            |(
                (hidden, latent),
                activation,
                (dropout, epochs, batch_size, learning_rate),
                (patience, seed),
            )| {
                NeuralEncoderSpec {
                    hidden,
                    latent,
                    activation,
                    dropout,
                    epochs,
                    batch_size,
                    learning_rate,
                    patience,
                    seed,
                }
            },
        )
}

fn encoder() -> impl Strategy<Value = EncoderSpec> {
    prop_oneof![
        Just(EncoderSpec::None),
        (1_usize..256, any::<bool>()).prop_map(|(n_components, whiten)| EncoderSpec::Pca {
            n_components,
            whiten
        }),
        network().prop_map(|net| EncoderSpec::Autoencoder { net }),
        (network(), finite(), 0_usize..100).prop_map(|(net, kl_weight, kl_warmup_epochs)| {
            EncoderSpec::Vae {
                net,
                kl_weight,
                kl_warmup_epochs,
            }
        }),
    ]
}

fn forest() -> impl Strategy<Value = ForestSpec> {
    let max_features = prop_oneof![
        Just(MaxFeatures::All),
        Just(MaxFeatures::Sqrt),
        Just(MaxFeatures::Log2),
        finite().prop_map(MaxFeatures::Fraction),
        (1_usize..1000).prop_map(MaxFeatures::Count),
    ];
    (
        (
            1_usize..1000,
            prop::option::of(1_usize..64),
            2_usize..20,
            1_usize..20,
        ),
        (
            max_features,
            any::<bool>(),
            prop::option::of(finite()),
            any::<u64>(),
        ),
        (2_usize..=256, any::<bool>()),
    )
        .prop_map(
            |(
                (n_estimators, max_depth, min_samples_split, min_samples_leaf),
                (max_features, bootstrap, max_samples, random_state),
                (max_bins, oob_score),
            )| ForestSpec {
                n_estimators,
                max_depth,
                min_samples_split,
                min_samples_leaf,
                max_features,
                bootstrap,
                max_samples,
                random_state,
                max_bins,
                oob_score,
            },
        )
}

fn regressor() -> impl Strategy<Value = RegressorSpec> {
    prop_oneof![
        finite().prop_map(|alpha| RegressorSpec::Ridge { alpha }),
        (finite(), 1_usize..100_000, finite()).prop_map(|(alpha, max_iter, tol)| {
            RegressorSpec::Lasso {
                alpha,
                max_iter,
                tol,
            }
        }),
        (finite(), finite(), 1_usize..100_000, finite()).prop_map(
            |(alpha, l1_ratio, max_iter, tol)| RegressorSpec::ElasticNet {
                alpha,
                l1_ratio,
                max_iter,
                tol,
            }
        ),
        forest().prop_map(RegressorSpec::RandomForest),
    ]
}

fn train_request() -> impl Strategy<Value = TrainRequest> {
    (
        ("[A-Z0-9._-]{1,20}", timeframe(), features()),
        (
            prop::collection::vec(1_u32..1000, 0..6),
            finite(),
            finite(),
            prop::option::of(0_u32..500),
        ),
        prop::collection::vec((encoder(), regressor()), 0..5),
        device(),
    )
        .prop_map(
            |(
                (symbol, timeframe, features),
                (horizons, train, validation, purge),
                models,
                device,
            )| {
                TrainRequest {
                    symbol,
                    timeframe,
                    features,
                    targets: TargetSpec { horizons },
                    split: SplitSpec {
                        train_fraction: train,
                        validation_fraction: validation,
                        purge,
                    },
                    models: models
                        .into_iter()
                        .map(|(encoder, regressor)| ModelConfig { encoder, regressor })
                        .collect(),
                    device,
                }
            },
        )
}

fn backtest_request() -> impl Strategy<Value = BacktestRequest> {
    (
        prop::collection::vec("[a-z0-9-]{1,40}", 0..5),
        prop::option::of("[A-Z]{6}"),
        prop::option::of(timeframe()),
        prop::sample::select(vec![Combine::Mean, Combine::Median, Combine::Weighted]),
        device(),
        (
            prop::option::of(any::<i64>()),
            prop::option::of(any::<i64>()),
        ),
    )
        .prop_map(
            |(ids, symbol, timeframe, combine, device, (from_ts, to_ts))| BacktestRequest {
                selection: ModelSelection {
                    ids,
                    symbol,
                    timeframe,
                    combine,
                    device,
                },
                from_ts,
                to_ts,
            },
        )
}

fn round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(value).unwrap();
    let back: T =
        serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e} in {text}")))?;
    prop_assert_eq!(&back, value, "{}", text);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn train_requests_survive_json(request in train_request()) {
        round_trips(&request)?;
    }

    #[test]
    fn backtest_requests_survive_json(request in backtest_request()) {
        round_trips(&request)?;
    }
}
